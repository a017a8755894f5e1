SERVER_BIN=/tmp/build-new LABEL=base-2 bench/attachments.sh cluster
