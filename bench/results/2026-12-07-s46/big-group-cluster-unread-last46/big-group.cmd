SERVER_BIN=/tmp/build-last46 LABEL=unread-last46 UNREAD=2000 bench/big-group.sh cluster
