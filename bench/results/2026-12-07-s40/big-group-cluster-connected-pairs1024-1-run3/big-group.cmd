SERVER_BIN=/tmp/build-pairs1024 LABEL=s40-pairs1024-1-run3 CONNECTED=9998 bench/big-group.sh cluster
