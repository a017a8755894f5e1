SERVER_BIN=/tmp/build-list46 LABEL=list46 bench/chat-list.sh
