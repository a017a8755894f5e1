SERVER_BIN=/tmp/build-base46 LABEL=base46 bench/prune.sh standalone
