SERVER_BIN=/tmp/build-new LABEL=peak-new-4 bench/big-group.sh standalone
