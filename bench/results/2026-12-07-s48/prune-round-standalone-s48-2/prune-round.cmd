SERVER_BIN=/tmp/build-s48 LABEL=s48-2 bench/prune-round.sh standalone
