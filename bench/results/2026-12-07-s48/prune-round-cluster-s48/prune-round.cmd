SERVER_BIN=/tmp/build-s48 LABEL=s48 bench/prune-round.sh cluster
