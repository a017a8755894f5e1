SERVER_BIN=/tmp/build-base LABEL=peak-base-4 bench/big-group.sh standalone
