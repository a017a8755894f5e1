SERVER_BIN=/tmp/build-final47 LABEL=s47-final47-5 LISTS=20 bench/big-group.sh cluster
