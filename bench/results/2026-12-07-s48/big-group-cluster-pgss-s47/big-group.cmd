SERVER_BIN=/tmp/build-s47 LABEL=pgss-s47 LISTS=20 bench/big-group.sh cluster
