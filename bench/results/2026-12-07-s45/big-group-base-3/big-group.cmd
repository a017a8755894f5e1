SERVER_BIN=/tmp/build-base LABEL=peak-base-3 bench/big-group.sh standalone
