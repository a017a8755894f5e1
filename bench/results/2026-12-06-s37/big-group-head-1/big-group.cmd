SERVER_BIN=/tmp/build-head LABEL=s37-head-1 bench/big-group.sh
