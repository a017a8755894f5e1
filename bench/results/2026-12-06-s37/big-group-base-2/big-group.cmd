SERVER_BIN=/tmp/build-base LABEL=s37-base-2 bench/big-group.sh
