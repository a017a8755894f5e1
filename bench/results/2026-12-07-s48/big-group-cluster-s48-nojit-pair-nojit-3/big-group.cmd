SERVER_BIN=/tmp/build-nojit LABEL=s48-nojit-pair-nojit-3 LISTS=20 bench/big-group.sh cluster
