SERVER_BIN=/tmp/build-text46 LABEL=text46 bench/chat-list.sh
