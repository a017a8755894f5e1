#!/bin/bash
# Usage: bench/diagnose/unreadmem.sh BUILD_DIR PORT [READERS] [MESSAGES] [FIRST]
# What clients that stop reading cost a standalone gateway in memory when
# large messages come all at once. Starts BUILD_DIR's gateway on PORT with
# an empty data directory; bob opens READERS (99) connections that ping
# once (FIRST=ping, the default; FIRST=none sends nothing, so the gateway
# holds their live events waiting for a first frame) and then read nothing
# (4 KiB receive buffers), and alice sends
# MESSAGES (600) messages of about 63 KB (the most a frame holds) to their
# group in one write. Prints the gateway's resident memory before and at
# its peak over 15 s, and the connections it closed as slow consumers.
# Written for the forty-third session (docs/benchmarks-journal.md), after
# a hostile-client audit had such a burst take a gateway to 1.6 GB.
set -u
bin=$1; port=$2; readers=${3:-99}; messages=${4:-600}; first=${5:-ping}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
DATA_DIR=$dir LISTEN_ADDR=127.0.0.1:$port "$bin/gateway" > "$dir/log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; rm -rf "$dir"' EXIT
until curl -sf "127.0.0.1:$port/healthz" >/dev/null; do sleep 0.1; done
alice=$(DATA_DIR=$dir "$bin/gateway" token --user alice)
bob=$(DATA_DIR=$dir "$bin/gateway" token --user bob)
chat=$(curl -s -X POST "127.0.0.1:$port/v1/chats" -H "Authorization: Bearer $alice" \
    -d '{"type":"group","name":"g","members":["bob"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "unreadmem: $readers connections of bob's stop reading; alice sends $messages messages at once"
(cd "$here" && python3 unreadmem.py "$port" "$gw" "$alice" "$bob" "$chat" "$readers" "$messages" 15 "$first") | sed 's/^/unreadmem: /'
slow=$(curl -s "127.0.0.1:$port/metrics" | awk '/^chat_connections_closed_total\{reason="slow"\}/ {print $2}')
echo "unreadmem: connections closed as slow consumers (4001): ${slow:-0}"
