#!/usr/bin/env bash
# What messages with the largest attachments a frame allows cost the
# servers. One connection sends COUNT (default 500) `new` frames at once
# into a group of two, each with about 60 KB of attachments in objects of
# one key ([{"a":0},...], the shape that costs a parsed JSON tree the most
# for its size), and waits for every ack; then the other member reads the
# newest page of 200 over REST, ten times. Reports the gateway's (in a
# cluster also the worker's) peak resident memory and CPU seconds. Usage:
#   [COUNT=N] bench/attachments.sh [standalone|cluster]
# Results: bench/results/<date>-attachments-<mode>/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
count=${COUNT:-500}
source scripts/lib/services.sh
source bench/common.sh "attachments-$mode"

server_pid=""
worker_pid=""
data=$(mktemp -d)
bench_stop_at_exit CLIENT_PID worker_pid server_pid
case $mode in
    standalone) ;;
    cluster) bench_services ;;
    *) echo "usage: bench/attachments.sh [standalone|cluster]" >&2; exit 64 ;;
esac
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${COUNT:+COUNT=$COUNT }bench/attachments.sh $mode" > "$results/attachments.cmd"
cargo build --release -q -p gateway --example client
port=$(free_port)
# REST_RATE=0: the reads are timed, not rationed. OUTBOUND_BYTES: the
# sender gets its own messages' events, 32 MB for 500, faster than the
# example client, busy sending, reads them; at the default 4 MiB it would
# be closed as a slow consumer.
OUTBOUND_BYTES=268435456 REST_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
server_pid=$!
if [ "$mode" = cluster ]; then
    WORKER_ID=worker-1 ADMIN_LISTEN=127.0.0.1:0 "$server_bin"/worker > "$results/worker.log" 2>&1 &
    worker_pid=$!
fi
bench_wait_ready "$port"
token() { "$server_bin"/gateway token --user "$1" --data-dir "$data"; }
alice=$(token alice)
bob=$(token bob)
api="http://127.0.0.1:$port/v1"
chat=$(curl -sf -X POST "$api/chats" -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' \
    --data-binary '{"type":"group","name":"files","members":["bob"]}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

peak_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
python3 - "$chat" "$count" > "$data/frames" <<'PY'
import json, sys
chat, count = int(sys.argv[1]), int(sys.argv[2])
for n in range(1, count + 1):
    frame = {"type": "new", "ref": f"a-{n}", "chatId": chat, "clientMessageId": f"a-{n}", "message": f"file {n}",
             "attachments": [{"a": 0}] * 8_000}
    print(json.dumps(frame, separators=(",", ":")))
PY
frame_bytes=$(head -1 "$data/frames" | wc -c)
gateway_cpu_before=$(cpu_s "$server_pid")
worker_cpu_before=$([ -n "$worker_pid" ] && cpu_s "$worker_pid" || echo 0)
started=$(date +%s.%N)
# Only acks, errors and a close reach this script: the sender gets its own
# messages' events too, and bash reads lines a byte at a time, too slowly
# for 64 KB ones (the gateway would close the connection as a slow
# consumer).
coproc CLIENT {
    target/release/examples/client "ws://127.0.0.1:$port/ws" "$alice" | grep --line-buffered -E '^(< \{"type":"(ack|error)"|closed)'
}
# Written from a background job, while the acks are read here: a copy of
# the coprocess's input, since bash keeps its own from subshells.
exec {to_client}>&"${CLIENT[1]}"
cat "$data/frames" >&"$to_client" &
exec {to_client}>&-
acked=0
while [ "$acked" -lt "$count" ] && read -r frame <&"${CLIENT[0]}"; do
    case $frame in
        *'"type":"ack"'*) acked=$((acked + 1)); [ $((acked % 50)) = 0 ] && echo "progress: $acked/$count acked" >&2 ;;
        *'"type":"error"'* | closed*) echo "bench: ${frame:0:300}" >&2; exit 1 ;;
    esac
done
[ "$acked" = "$count" ] || { echo "bench: $acked of $count acked" >&2; exit 1; }
sent_s=$(echo "$started $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')
pages=()
for i in $(seq 1 10); do
    pages+=("$(curl -sf -o "$data/page.json" -w '%{time_total}\n' "$api/chats/$chat/messages?limit=200" \
        -H "Authorization: Bearer $bob" | awk '{printf "%.1f\n", $1 * 1000}')")
done
echo "progress: 10/10 history pages" >&2
python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["messages"]; assert len(p) == min(200, int(sys.argv[2])) and all(len(m["attachments"]) == 8000 for m in p), "a page without all its messages or their attachments"' "$data/page.json" "$count"
summary() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {printf "p50 %.1f ms, max %.1f ms", v[int((NR + 1) / 2)], v[NR]}'; }
{
    echo "$count messages of $frame_bytes bytes each (attachments of 8,000 one-key objects), sent at once: all acked in $sent_s s"
    echo "GET /v1/chats/$chat/messages?limit=200 ($(stat -c %s "$data/page.json") bytes), 10 calls: $(summary "${pages[@]}")"
    echo "gateway: peak resident memory $(peak_mib "$server_pid") MiB, CPU $(echo "$gateway_cpu_before $(cpu_s "$server_pid")" | awk '{printf "%.2f", $2 - $1}') s"
    if [ -n "$worker_pid" ]; then
        echo "worker: peak resident memory $(peak_mib "$worker_pid") MiB, CPU $(echo "$worker_cpu_before $(cpu_s "$worker_pid")" | awk '{printf "%.2f", $2 - $1}') s"
    fi
} | tee "$results/attachments.txt"
