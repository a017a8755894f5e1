SERVER_BIN=/tmp/build-nojit LABEL=s48-sa-lists-nojit-2 LISTS=20 bench/big-group.sh standalone
