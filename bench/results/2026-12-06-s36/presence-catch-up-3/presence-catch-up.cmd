LABEL=s36-3 bench/presence-catch-up.sh
