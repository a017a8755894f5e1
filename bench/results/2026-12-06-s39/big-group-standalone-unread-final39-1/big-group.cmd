SERVER_BIN=/tmp/build-final39 LABEL=s39-unread-final39-1 UNREAD=1 bench/big-group.sh standalone
