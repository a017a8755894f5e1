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
# shellcheck source=bench/diagnose/lib.sh
source "$here/lib.sh"
diagnose_alice_and_bob "$bin" "$port"
echo "unreadmem: $readers connections of bob's stop reading; alice sends $messages messages at once"
(cd "$here" && python3 unreadmem.py "$port" "$gw" "$alice" "$bob" "$chat" "$readers" "$messages" 15 "$first") | sed 's/^/unreadmem: /'
slow=$(curl -s "127.0.0.1:$port/metrics" | awk '/^chat_connections_closed_total\{reason="slow"\}/ {print $2}')
echo "unreadmem: connections closed as slow consumers (4001): ${slow:-0}"
