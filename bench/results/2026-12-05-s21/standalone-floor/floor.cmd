SERVER_BIN=/tmp/build-s21 /tmp/build-s21/loadtest floor --connections 2000 --rate 20000 --duration 10
