SERVER_BIN=/tmp/build-purge LABEL=purge-4m COUNT=4000000 bench/delete-chat.sh cluster
