SERVER_BIN=/tmp/build-att LABEL=new-2 bench/attachments.sh cluster
