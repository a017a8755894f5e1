SERVER_BIN=/tmp/build-prune LABEL=s47-prune-5 LISTS=20 bench/big-group.sh cluster
