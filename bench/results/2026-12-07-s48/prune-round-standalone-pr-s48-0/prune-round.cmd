SERVER_BIN=/tmp/build-s48 LABEL=pr-s48-0 bench/prune-round.sh standalone
