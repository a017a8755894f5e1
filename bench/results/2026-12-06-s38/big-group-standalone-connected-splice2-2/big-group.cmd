SERVER_BIN=/tmp/build-splice2 LABEL=s38-connected-splice2-2 CONNECTED=9998 bench/big-group.sh standalone
