#!/usr/bin/env bash
# What a long gap in a chat's events costs a cluster's gateway. One
# gateway, one worker, a private Redis and PostgreSQL; alice and bob share a
# group, each connected to the gateway. The gateway's event subscription
# is cut off (Redis refuses SUBSCRIBE to its user, and its pub/sub
# connections are killed), alice sends COUNT messages of 16 KiB (default
# 5,000; the worker stores them, their events reach no one), and once all
# are stored Redis lets the gateway subscribe again: it finds the chat
# behind the store and fills the gap, delivering every event to bob. Reports
# the gateway's peak resident memory over the fill, how long until bob had
# every message, and whether bob's connection was closed meanwhile. Usage:
#   [COUNT=N] bench/gap-fill.sh
# Results: bench/results/<date>-gap-fill/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5000}
source scripts/lib/services.sh
source bench/common.sh gap-fill
cargo build --release -q -p gateway --example client

server_pid=""
worker_pid=""
alice_pid=""
bob_pid=""
data=$(mktemp -d)
bench_stop_at_exit alice_pid bob_pid worker_pid server_pid
bench_services
port=$(free_port)
# COMMAND_RATE=0: alice's messages go out as fast as she sends them.
COMMAND_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" > "$results/gateway.log" 2>&1 &
server_pid=$!
WORKER_ID=worker-1 ADMIN_LISTEN=127.0.0.1:0 "$server_bin"/worker > "$results/worker.log" 2>&1 &
worker_pid=$!
bench_wait_ready "$port"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${COUNT:+COUNT=$COUNT }bench/gap-fill.sh" > "$results/gap-fill.cmd"
alice=$("$server_bin"/gateway token --user alice)
bob=$("$server_bin"/gateway token --user bob)
api="http://127.0.0.1:$port/v1"
chat=$(curl -sf -X POST "$api/chats" -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' \
    --data-binary '{"type":"group","name":"gap","members":["bob"]}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print int($2)}' | tail -1; }
rss_mib() { awk -v field="$1" '$1 == field":" {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
stored() { psql -Atq "$DATABASE_URL" -c "SELECT count(*) FROM messages WHERE chat_id = $chat"; }
redis() { redis-cli -u "$REDIS_URL" "$@" > /dev/null; }

# Each client reads its commands from a FIFO held open here, and writes
# every frame it gets to a file.
connect() {
    mkfifo "$data/$1.in"
    target/release/examples/client "ws://127.0.0.1:$port/ws" "$2" < "$data/$1.in" > "$data/$1.frames" &
}
connect alice "$alice"
alice_pid=$!
exec {to_alice}> "$data/alice.in"
connect bob "$bob"
bob_pid=$!
exec {to_bob}> "$data/bob.in"
until [ "$(metric chat_open_connections)" = 2 ]; do sleep 0.1; done
echo '{"type":"new","ref":"first","chatId":'"$chat"',"clientMessageId":"first","message":"before the gap"}' >&"$to_alice"
until grep -q '"clientMessageId":"first"' "$data/bob.frames"; do sleep 0.1; done
echo "progress: bob hears the chat" >&2

redis ACL SETUSER default -subscribe
redis CLIENT KILL TYPE pubsub
until grep -q "event subscription lost" "$results/gateway.log"; do sleep 0.1; done
echo "progress: the gateway's subscription is cut off" >&2
text=$(printf 'x%.0s' $(seq 1 16384))
for n in $(seq 1 "$count"); do
    echo "{\"type\":\"new\",\"ref\":\"g$n\",\"chatId\":$chat,\"clientMessageId\":\"g$n\",\"message\":\"$text\"}"
done >&"$to_alice" &
sender=$!
until [ "$(stored)" -ge $((count + 1)) ]; do
    kill -0 "$alice_pid" 2>/dev/null || { echo "bench: alice's client stopped" >&2; exit 1; }
    echo "progress: $(stored)/$((count + 1)) messages stored" >&2
    sleep 1
done
wait "$sender"
echo "progress: $count messages stored while the gateway heard none" >&2

# The peak from here on: writing 5 to clear_refs starts VmHWM over.
echo 5 > "/proc/$server_pid/clear_refs"
rss_before=$(rss_mib VmRSS)
slow_before=$(metric 'chat_connections_closed_total{reason="slow"}')
started=$(date +%s.%N)
redis ACL SETUSER default +subscribe
heard() { grep -c '"type":"new"' "$data/bob.frames" || true; }
while [ "$(heard)" -lt $((count + 1)) ] && kill -0 "$bob_pid" 2>/dev/null; do
    elapsed=$(echo "$started $(date +%s.%N)" | awk '{printf "%.0f", $2 - $1}')
    [ "$elapsed" -lt 120 ] || break
    echo "progress: bob has $(heard)/$((count + 1)) messages" >&2
    sleep 0.5
done
filled_ms=$(echo "$started $(date +%s.%N)" | awk '{printf "%.0f", ($2 - $1) * 1000}')
slow_after=$(metric 'chat_connections_closed_total{reason="slow"}')
{
    echo "gap of $count messages of 16,384 bytes, filled after the subscription came back"
    echo "bob had $(heard) of the $((count + 1)) messages after $filled_ms ms; closed as slow meanwhile: $(( ${slow_after:-0} - ${slow_before:-0} ))"
    echo "gateway resident memory over the fill: $rss_before MiB before, peak $(rss_mib VmHWM) MiB"
} | tee "$results/gap-fill.txt"
exec {to_alice}>&- {to_bob}>&-
