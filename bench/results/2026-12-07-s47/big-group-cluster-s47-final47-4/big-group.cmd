SERVER_BIN=/tmp/build-final47 LABEL=s47-final47-4 LISTS=20 bench/big-group.sh cluster
