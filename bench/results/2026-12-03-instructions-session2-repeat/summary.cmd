LABEL=session2-repeat bench/instructions.sh 10 30
