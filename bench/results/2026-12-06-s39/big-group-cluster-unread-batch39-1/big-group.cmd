SERVER_BIN=/tmp/build-batch39 LABEL=s39-unread-batch39-1 UNREAD=1 bench/big-group.sh cluster
