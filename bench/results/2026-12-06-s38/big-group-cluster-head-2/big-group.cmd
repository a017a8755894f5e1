SERVER_BIN=/tmp/build-s38 LABEL=s38-head-2 bench/big-group.sh cluster
