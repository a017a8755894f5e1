SERVER_BIN=/tmp/build-nojit LABEL=s48-hist-nojit HISTORY=1 bench/big-group.sh cluster
