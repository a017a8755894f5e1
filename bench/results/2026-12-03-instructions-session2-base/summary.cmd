SERVER_BIN=/tmp/base LABEL=session2-base bench/instructions.sh 10 30
