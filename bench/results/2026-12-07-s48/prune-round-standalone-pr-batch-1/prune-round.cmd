SERVER_BIN=/tmp/build-batch LABEL=pr-batch-1 bench/prune-round.sh standalone
