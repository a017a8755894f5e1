SERVER_BIN=/tmp/build-last46 LABEL=last46-1 bench/gap-fill.sh
