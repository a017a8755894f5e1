SERVER_BIN=/tmp/build-batch39 LABEL=s39-batch39-3 bench/big-group.sh standalone
