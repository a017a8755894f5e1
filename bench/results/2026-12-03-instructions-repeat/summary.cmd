LABEL=repeat bench/instructions.sh 10 30
