LABEL=s4-admit bench/instructions.sh 10 30
