SERVER_BIN=/tmp/build-count LABEL=pgss-count LISTS=20 bench/big-group.sh cluster
