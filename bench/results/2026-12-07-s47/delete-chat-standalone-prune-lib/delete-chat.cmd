SERVER_BIN=/tmp/build-prune LABEL=prune-lib bench/delete-chat.sh standalone
