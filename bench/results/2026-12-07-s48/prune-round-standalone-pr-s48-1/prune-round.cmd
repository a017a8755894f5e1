SERVER_BIN=/tmp/build-s48 LABEL=pr-s48-1 bench/prune-round.sh standalone
