SERVER_BIN=/tmp/build-window46 LABEL=unread-window46 UNREAD=2000 bench/big-group.sh cluster
