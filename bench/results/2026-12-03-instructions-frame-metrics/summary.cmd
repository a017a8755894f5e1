SERVER_BIN=/tmp/fm LABEL=frame-metrics bench/instructions.sh 10 30
