SERVER_BIN=/tmp/build-base LABEL=s40-base-2 CONNECTED=9998 bench/big-group.sh standalone
