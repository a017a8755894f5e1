SERVER_BIN=/tmp/build-batch LABEL=pr-batch-0 bench/prune-round.sh standalone
