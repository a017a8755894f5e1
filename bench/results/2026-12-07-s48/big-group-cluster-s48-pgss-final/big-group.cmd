SERVER_BIN=/tmp/build-final48 LABEL=s48-pgss-final LISTS=20 PGSS=1 bench/big-group.sh cluster
