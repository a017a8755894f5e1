SERVER_BIN=/tmp/build-ckpt BASE_BIN=/tmp/build-base bench/idle-server.sh 30 3
