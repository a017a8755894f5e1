SERVER_BIN=/tmp/build-new LABEL=s40-new-1 CONNECTED=9998 bench/big-group.sh standalone
