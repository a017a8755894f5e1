SERVER_BIN=/tmp/build-base38 LABEL=s38-base-1 bench/big-group.sh standalone
