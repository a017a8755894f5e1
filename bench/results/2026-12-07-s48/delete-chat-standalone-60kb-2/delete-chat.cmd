SERVER_BIN=/tmp/build-s47 LABEL=big-s47b COUNT=10000 BODY_BYTES=60000 bench/delete-chat.sh standalone
