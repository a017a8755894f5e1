SERVER_BIN=/tmp/build-count LABEL=pgss-count-2 LISTS=20 bench/big-group.sh cluster
