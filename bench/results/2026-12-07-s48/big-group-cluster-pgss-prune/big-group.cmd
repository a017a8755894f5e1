SERVER_BIN=/tmp/build-prune LABEL=pgss-prune LISTS=20 bench/big-group.sh cluster
