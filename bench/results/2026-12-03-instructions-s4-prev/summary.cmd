SERVER_BIN=/work/prev/target/release LABEL=s4-prev bench/instructions.sh 10 30
