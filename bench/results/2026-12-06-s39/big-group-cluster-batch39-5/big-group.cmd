SERVER_BIN=/tmp/build-batch39 LABEL=s39-batch39-2 bench/big-group.sh cluster
