SERVER_BIN=/tmp/build-last46 LABEL=last46-2 bench/gap-fill.sh
