SERVER_BIN=/tmp/build-unread LABEL=unread-again LURKER=1 bench/delete-chat.sh standalone
