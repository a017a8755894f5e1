SERVER_BIN=/tmp/build-untold39 LABEL=s39-untold39-2 bench/big-group.sh cluster
