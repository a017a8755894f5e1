SERVER_BIN=/tmp/build-before LABEL=s36-before bench/rest-presence.sh
