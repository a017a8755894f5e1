SERVER_BIN=/tmp/build-prune LABEL=prune bench/prune.sh standalone
