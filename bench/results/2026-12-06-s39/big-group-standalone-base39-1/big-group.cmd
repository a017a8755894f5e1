SERVER_BIN=/tmp/build-base39 LABEL=s39-base39-1 bench/big-group.sh standalone
