SERVER_BIN=/tmp/build-base LABEL=history-base-2 HISTORY=1 bench/big-group.sh standalone
