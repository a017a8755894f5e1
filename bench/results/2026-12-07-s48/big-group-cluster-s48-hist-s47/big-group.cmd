SERVER_BIN=/tmp/build-s47 LABEL=s48-hist-s47 HISTORY=1 bench/big-group.sh cluster
