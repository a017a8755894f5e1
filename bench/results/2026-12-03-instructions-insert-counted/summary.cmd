SERVER_BIN=/tmp/ret LABEL=insert-counted bench/instructions.sh 10 30
