LABEL=s4-reader bench/instructions.sh 10 30
