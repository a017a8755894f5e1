SERVER_BIN=/tmp/build-final LABEL=s36-final bench/rest-presence.sh
