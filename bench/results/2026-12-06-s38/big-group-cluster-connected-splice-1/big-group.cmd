SERVER_BIN=/tmp/build-splice LABEL=s38-connected-splice-1 CONNECTED=9998 bench/big-group.sh cluster
