SERVER_BIN=/tmp/build-base39 LABEL=s39-base39-2 bench/big-group.sh cluster
