SERVER_BIN=/tmp/build-list46 LABEL=list46 LISTS=20 bench/big-group.sh cluster
