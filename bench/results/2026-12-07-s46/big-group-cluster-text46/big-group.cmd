SERVER_BIN=/tmp/build-text46 LABEL=text46 LISTS=20 bench/big-group.sh cluster
