SERVER_BIN=/tmp/build-head2 LABEL=s37-head2-2 bench/big-group.sh cluster
