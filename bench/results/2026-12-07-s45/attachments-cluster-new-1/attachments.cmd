SERVER_BIN=/tmp/build-att LABEL=new-1 bench/attachments.sh cluster
