SERVER_BIN=/tmp/build-unread LABEL=s47-unread UNREAD=2000 bench/big-group.sh standalone
