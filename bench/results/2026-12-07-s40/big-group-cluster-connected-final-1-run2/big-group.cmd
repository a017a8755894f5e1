SERVER_BIN=/tmp/build-final LABEL=s40-final-1 CONNECTED=9998 bench/big-group.sh cluster
