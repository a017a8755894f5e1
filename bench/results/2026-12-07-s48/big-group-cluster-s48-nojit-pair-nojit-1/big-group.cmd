SERVER_BIN=/tmp/build-nojit LABEL=s48-nojit-pair-nojit-1 LISTS=20 bench/big-group.sh cluster
