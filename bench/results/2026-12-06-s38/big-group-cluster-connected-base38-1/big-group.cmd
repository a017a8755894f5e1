SERVER_BIN=/tmp/build-base38 LABEL=s38-connected-base38-1 CONNECTED=9998 bench/big-group.sh cluster
