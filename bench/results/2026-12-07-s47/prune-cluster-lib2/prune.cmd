SERVER_BIN=/tmp/build-unread LABEL=lib2 bench/prune.sh cluster
