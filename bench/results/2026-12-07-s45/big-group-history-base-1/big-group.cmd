LABEL=history-base HISTORY=1 bench/big-group.sh standalone
