SERVER_BIN=/tmp/build-s38 LABEL=s38-connected-s38-1 CONNECTED=9998 bench/big-group.sh cluster
