LABEL=s36-2 bench/presence-catch-up.sh
