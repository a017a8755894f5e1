SERVER_BIN=/tmp/build-untold39 LABEL=s39-untold39-1 bench/big-group.sh cluster
