SERVER_BIN=/tmp/build-base46 LABEL=base46-2 LISTS=20 bench/big-group.sh cluster
