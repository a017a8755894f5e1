SERVER_BIN=/tmp/build-splice2 LABEL=s38-connected-splice2-1 CONNECTED=9998 bench/big-group.sh cluster
