MIMALLOC_PURGE_DELAY=0 SERVER_BIN=/tmp/build-s38 LABEL=s38-head-purge0-1 bench/big-group.sh cluster
