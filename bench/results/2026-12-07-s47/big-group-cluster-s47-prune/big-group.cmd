SERVER_BIN=/tmp/build-prune LABEL=s47-prune LISTS=20 bench/big-group.sh cluster
