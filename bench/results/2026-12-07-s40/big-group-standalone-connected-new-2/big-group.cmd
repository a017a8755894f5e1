SERVER_BIN=/tmp/build-new LABEL=s40-new-2 CONNECTED=9998 bench/big-group.sh standalone
