SERVER_BIN=/tmp/s7/base-bin /tmp/s7/base-bin/loadtest floor --connections 2000 --rate 20000 --duration 10
