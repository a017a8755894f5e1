SERVER_BIN=/tmp/build-s45 LABEL=s45-2 bench/gap-fill.sh
