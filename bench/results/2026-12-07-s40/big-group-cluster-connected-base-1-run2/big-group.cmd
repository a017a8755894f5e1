SERVER_BIN=/tmp/build-base LABEL=s40-base-1 CONNECTED=9998 bench/big-group.sh cluster
