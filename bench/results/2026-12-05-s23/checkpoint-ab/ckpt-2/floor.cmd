SERVER_BIN=/tmp/build-ckpt /tmp/build-base/loadtest floor --connections 2000 --rate 20000 --duration 10
