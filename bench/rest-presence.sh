#!/usr/bin/env bash
# The latency of `GET /v1/presence` for 500 users (the most one request
# may name): 250 online, 250 offline with a stored last-seen time, against
# one gateway and one worker on a private Redis and PostgreSQL. 200
# requests, one at a time. Usage:
#   bench/rest-presence.sh
# Results: bench/results/<date>-rest-presence/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
source bench/common.sh rest-presence

gateway_pid=""
worker_pid=""
stop_all() {
    kill $gateway_pid $worker_pid 2>/dev/null || true
    wait 2>/dev/null || true
    services_stop
}
trap stop_all EXIT
bench_services
"$server_bin"/worker > "$results/worker.log" 2>&1 &
worker_pid=$!
port=$(free_port)
NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" > "$results/gateway.log" 2>&1 &
gateway_pid=$!
bench_wait_ready "$port"

# The users' state is written where the gateway keeps it: last-seen times
# in the store, connection counts in Redis (as a connection would count).
psql -q "$DATABASE_URL" -c "INSERT INTO users (user_id, last_seen) SELECT 'u' || g, 1700000000000 + g FROM generate_series(250, 499) g"
for n in $(seq 0 249); do echo "HSET chat:online:u$n gw-1 1"; done | redis-cli -u "$REDIS_URL" > /dev/null
token=$("$server_bin"/gateway token --user alice)
users=$(seq -s, -f 'u%g' 0 499)
url="http://127.0.0.1:$port/v1/presence?users=$users"

measure() {
    curl -sf "$url" -H "Authorization: Bearer $token" | python3 -c '
import json, sys
users = json.load(sys.stdin)["users"]
online = sum(u["online"] for u in users)
seen = sum(u["lastSeen"] is not None and not u["online"] for u in users)
print(f"answer checked: {online} online, {seen} offline with lastSeen")
assert (online, seen) == (250, 250)'
    for i in $(seq 1 200); do
        curl -sf -o /dev/null -w '%{time_total}\n' "$url" -H "Authorization: Bearer $token"
        if [ $((i % 50)) -eq 0 ]; then echo "progress: $i/200 requests" >&2; fi
    done | sort -n | awk '{ms[NR] = $1 * 1000} END {
        printf "GET /v1/presence, 500 users, 200 requests: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
            ms[int(NR * 0.5)], ms[int(NR * 0.9)], ms[int(NR * 0.99)], ms[NR] }'
}
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }bench/rest-presence.sh" > "$results/rest-presence.cmd"
measure | tee "$results/rest-presence.txt"
