SERVER_BIN=/tmp/build-missed46 LABEL=unread-missed46 UNREAD=2000 bench/big-group.sh standalone
