SERVER_BIN=/tmp/adv LABEL=advance-read-back bench/instructions.sh 10 30
