bench/instructions.sh 10 30
