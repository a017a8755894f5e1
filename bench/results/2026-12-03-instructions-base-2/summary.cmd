SERVER_BIN=/tmp/base LABEL=base-2 bench/instructions.sh 10 30
