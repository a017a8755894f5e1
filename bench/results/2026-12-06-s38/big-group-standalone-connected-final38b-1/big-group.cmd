SERVER_BIN=/tmp/build-final38b LABEL=s38-connected-final38b-1 CONNECTED=9998 bench/big-group.sh standalone
