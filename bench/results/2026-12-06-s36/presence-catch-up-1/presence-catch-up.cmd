LABEL=s36-1 bench/presence-catch-up.sh
