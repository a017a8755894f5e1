#!/bin/bash
# Usage: bench/diagnose/syncmem.sh BUILD_DIR PORT [MESSAGES] [STORE_WAIT_S]
# What a client that syncs a long history and does not read costs a
# standalone gateway in memory. Starts BUILD_DIR's gateway on PORT with an
# empty data directory (COMMAND_RATE=0), has alice send MESSAGES (6000)
# messages of 8,000 bytes to a group with bob, waits STORE_WAIT_S (15) s
# for them to be stored, then has bob sync the chat from 0 with a 4 KiB
# receive buffer and read nothing for 5 s. Prints the gateway's resident
# memory before the sync and with bob stalled (syncmem.py speaks the
# WebSocket protocol by hand, so that bob can leave his socket unread).
# Written for the thirty-fourth session (docs/benchmarks-journal.md).
set -u
bin=$1; port=$2; messages=${3:-6000}; wait_s=${4:-15}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/diagnose/lib.sh
source "$here/lib.sh"
diagnose_alice_and_bob "$bin" "$port" COMMAND_RATE=0
rss() { awk '/VmRSS/ {print $2}' "/proc/$gw/status"; }
echo "syncmem: alice sends $messages messages of 8,000 bytes"
python3 "$here/syncmem.py" "$port" "$alice" "$bob" "$chat" "$messages" 8000 "$wait_s" | while read -r line; do
    echo "syncmem: $line; gateway RSS $(rss) KiB"
done &
driver=$!
sleep "$(python3 -c "print($wait_s - 0.5)")"
stored=$(curl -s "127.0.0.1:$port/v1/chats" -H "Authorization: Bearer $alice" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["chats"][0]["lastMessageId"])')
before=$(rss)
echo "syncmem: $stored messages stored; gateway RSS $before KiB before bob's sync"
wait $driver
