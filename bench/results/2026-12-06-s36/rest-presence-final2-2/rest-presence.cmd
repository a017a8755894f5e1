SERVER_BIN=/tmp/build-final2 LABEL=s36-final2-2 bench/rest-presence.sh
