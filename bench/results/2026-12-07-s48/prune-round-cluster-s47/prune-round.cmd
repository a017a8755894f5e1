SERVER_BIN=/tmp/build-s47 LABEL=s47 bench/prune-round.sh cluster
