SERVER_BIN=/tmp/build-s47 LABEL=s48-sa-lists-s47-4 LISTS=20 bench/big-group.sh standalone
