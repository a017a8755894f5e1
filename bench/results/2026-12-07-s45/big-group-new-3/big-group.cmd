SERVER_BIN=/tmp/build-new LABEL=peak-new-3 bench/big-group.sh standalone
