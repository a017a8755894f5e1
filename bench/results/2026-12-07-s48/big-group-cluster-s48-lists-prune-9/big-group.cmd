SERVER_BIN=/tmp/build-prune LABEL=s48-lists-prune-9 LISTS=20 bench/big-group.sh cluster
