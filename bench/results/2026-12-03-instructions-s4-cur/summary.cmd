LABEL=s4-cur bench/instructions.sh 10 30
