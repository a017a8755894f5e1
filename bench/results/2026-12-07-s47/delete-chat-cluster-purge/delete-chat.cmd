SERVER_BIN=/tmp/build-purge LABEL=purge bench/delete-chat.sh cluster
