SERVER_BIN=/tmp/build-s45 LABEL=s45-1 bench/gap-fill.sh
