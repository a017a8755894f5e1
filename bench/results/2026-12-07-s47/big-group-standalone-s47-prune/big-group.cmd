SERVER_BIN=/tmp/build-prune LABEL=s47-prune UNREAD=2000 bench/big-group.sh standalone
