SERVER_BIN=/tmp/build-s47 LABEL=s48-nojit-pair-s47-1 LISTS=20 bench/big-group.sh cluster
