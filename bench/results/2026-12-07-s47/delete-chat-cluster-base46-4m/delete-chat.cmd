SERVER_BIN=/tmp/build-base46 LABEL=base46-4m COUNT=4000000 bench/delete-chat.sh cluster
