LABEL=session2 bench/instructions.sh 10 30
