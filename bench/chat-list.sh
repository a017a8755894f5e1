#!/usr/bin/env bash
# What a chat list of many chats with long last messages costs a
# standalone gateway while its clients read it slowly. The creator makes
# CHATS groups (default 2,000) of two and sends each a message of 16 KiB
# (MAX_MESSAGE_BYTES), then ten clients read the creator's chat list at
# once, RATE bytes a second each (curl --limit-rate, default 4M; the list
# is some 33 MB), and the gateway's resident memory and CPU over those
# reads are reported. Usage:
#   [CHATS=N] [RATE=R] bench/chat-list.sh
# Results: bench/results/<date>-chat-list/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
chats=${CHATS:-2000}
rate=${RATE:-4M}
source bench/common.sh chat-list
# The client sends the messages; built now, not while anything is measured.
cargo build --release -q -p gateway --example client

server_pid=""
client_pid=""
data=$(mktemp -d)
bench_stop_at_exit client_pid server_pid
port=$(free_port)
# REST_RATE, COMMAND_RATE: the setup is timed by nothing and rationed by
# nothing.
REST_RATE=0 COMMAND_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" \
    > "$results/gateway.log" 2>&1 &
server_pid=$!
bench_wait_ready "$port"
token=$("$server_bin"/gateway token --user alice --data-dir "$data")
api="http://127.0.0.1:$port/v1"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${CHATS:+CHATS=$CHATS }${RATE:+RATE=$RATE }bench/chat-list.sh" \
    > "$results/chat-list.cmd"
rss_mib() { awk -v field="$1" '$1 == field":" {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$server_pid/stat"; }

for n in $(seq 1 "$chats"); do
    echo "{\"type\":\"group\",\"name\":\"g$n\",\"members\":[\"member-$n\"]}"
done | xargs -P 4 -d '\n' -I{} curl -sf -o /dev/null -X POST "$api/chats" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data-binary {} || true
created=$(curl -sf "$api/chats" -H "Authorization: Bearer $token" | python3 -c 'import json, sys; print(" ".join(str(c["id"]) for c in json.load(sys.stdin)["chats"]))')
[ "$(echo "$created" | wc -w)" = "$chats" ] || { echo "bench: $(echo "$created" | wc -w) of $chats chats created" >&2; exit 1; }
echo "progress: $chats chats created" >&2

# The client's frames go to a file, so that its acks never wait on a
# pipe this script is busy writing into; its commands come through a FIFO
# held open until every message is acked, 100 at a time: the client reads
# nothing while a send waits, and the sender gets each 16 KiB message back
# as an event, so thousands at once would fill its outbound queue
# (OUTBOUND_BYTES) and close it as slow.
text=$(printf 'x%.0s' $(seq 1 16384))
mkfifo "$data/commands"
target/release/examples/client "ws://127.0.0.1:$port/ws" "$token" < "$data/commands" > "$data/frames" &
client_pid=$!
exec {commands}> "$data/commands"
sent=0
for chat in $created; do
    echo "{\"type\":\"new\",\"ref\":\"m$chat\",\"chatId\":$chat,\"clientMessageId\":\"m$chat\",\"message\":\"$text\"}" >&"$commands"
    sent=$((sent + 1))
    [ $((sent % 100)) = 0 ] || [ "$sent" = "$chats" ] || continue
    until [ "$(grep -c '"type":"ack"' "$data/frames" || true)" -ge "$sent" ]; do
        kill -0 "$client_pid" 2>/dev/null || { echo "bench: the client stopped: $(tail -c 300 "$data/frames")" >&2; exit 1; }
        ! grep -q '"type":"error"' "$data/frames" || { echo "bench: a message was refused" >&2; exit 1; }
        sleep 0.1
    done
    echo "progress: $sent/$chats messages acked" >&2
done
exec {commands}>&-
wait "$client_pid" || true

# The peak from here on: writing 5 to clear_refs starts VmHWM over.
echo 5 > "/proc/$server_pid/clear_refs"
rss_before=$(rss_mib VmRSS)
cpu_before=$(cpu_s)
elapsed_ms=$(bench_ten_lists_at_once "$api" "$token" "$data" --limit-rate "$rate")
cpu_after=$(cpu_s)
check=$(python3 -c '
import json, sys
count = int(sys.argv[1])
lists = [json.load(open(path))["chats"] for path in sys.argv[2:]]
assert all(len(chats) == count and all(len(c["lastMessageText"]) == 16384 for c in chats) for chats in lists), "not every list whole"
assert all(chats == lists[0] for chats in lists), "the lists differ"
print(f"{count} chats, each with a last message of 16,384 bytes")' "$chats" "$data"/list-*.json)
{
    echo "GET /v1/chats ($check, $(stat -c %s "$data/list-1.json") bytes), 10 at once at $rate bytes/s each: all read in $elapsed_ms ms"
    echo "gateway resident memory over those reads: $rss_before MiB before, peak $(rss_mib VmHWM) MiB"
    echo "gateway CPU over those reads: $(echo "$cpu_before $cpu_after" | awk '{printf "%.2f", $2 - $1}') s"
} | tee "$results/chat-list.txt"
