SERVER_BIN=/tmp/build-prune LABEL=prune-lurker LURKER=1 bench/delete-chat.sh cluster
