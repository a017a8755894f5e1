SERVER_BIN=/tmp/build-base LABEL=s37-base-1 bench/big-group.sh cluster
