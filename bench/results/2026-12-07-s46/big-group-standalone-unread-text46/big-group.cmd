SERVER_BIN=/tmp/build-text46 LABEL=unread-text46 UNREAD=2000 bench/big-group.sh standalone
