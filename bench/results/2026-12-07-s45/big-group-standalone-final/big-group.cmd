LABEL=s45-final HISTORY=1 bench/big-group.sh standalone
