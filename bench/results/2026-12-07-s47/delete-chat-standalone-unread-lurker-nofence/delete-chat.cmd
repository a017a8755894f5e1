SERVER_BIN=/tmp/build-unread LABEL=unread-lurker LURKER=1 bench/delete-chat.sh standalone
