SERVER_BIN=/tmp/build-new LABEL=history-new-2 HISTORY=1 bench/big-group.sh standalone
