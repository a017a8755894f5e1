SERVER_BIN=target/release target/release/loadtest floor --connections 2000 --rate 20000 --duration 10
