SERVER_BIN=/tmp/build-base46 LABEL=base46 LISTS=20 bench/big-group.sh standalone
