SERVER_BIN=/tmp/build-final48 LABEL=s48-nopgss-final LISTS=20 bench/big-group.sh standalone
