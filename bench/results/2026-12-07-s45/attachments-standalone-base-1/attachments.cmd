SERVER_BIN=/tmp/build-new LABEL=base-1 bench/attachments.sh standalone
