SERVER_BIN=/tmp/build-head LABEL=s37-head-2 bench/big-group.sh
