SERVER_BIN=/tmp/build-final47 LABEL=final47 LURKER=1 bench/delete-chat.sh standalone
