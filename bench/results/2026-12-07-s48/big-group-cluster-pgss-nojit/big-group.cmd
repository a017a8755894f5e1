SERVER_BIN=/tmp/build-nojit LABEL=pgss-nojit LISTS=20 bench/big-group.sh cluster
