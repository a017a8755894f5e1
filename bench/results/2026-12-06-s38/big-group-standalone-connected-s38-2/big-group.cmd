SERVER_BIN=/tmp/build-s38 LABEL=s38-connected-s38-2 CONNECTED=9998 bench/big-group.sh standalone
