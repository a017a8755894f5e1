SERVER_BIN=/tmp/build-new /tmp/build-new/loadtest floor --connections 2000 --rate 20000 --duration 10 --via-tasks
