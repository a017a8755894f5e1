#!/usr/bin/env bash
# What a group of 10,000 members (the most a chat may have) costs a
# standalone gateway over REST: creating it with 9,999, then 20
# membership changes (a 10,000th member added, then removed, ten times),
# each of which tells every member the chat as they see it; then 50 reads
# of the creator's chat list. Nobody is connected, so this is the
# server's own work. Usage:
#   bench/big-group.sh [standalone|cluster]
# `cluster`: one gateway on a private Redis and PostgreSQL, and what the
# changes sent Redis and Redis sent on (its total_net_input_bytes and
# total_net_output_bytes). Results:
# bench/results/<date>-big-group-<mode>/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
source scripts/lib/services.sh
source bench/common.sh "big-group-$mode"

server_pid=""
data=$(mktemp -d)
stop_all() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$data"
    [ "$mode" = cluster ] && services_stop
    true
}
trap stop_all EXIT
port=$(free_port)
# Bytes Redis has received and sent (the gateway's subscription included).
redis_bytes() { redis-cli -u "$REDIS_URL" INFO stats | awk -F: "/^total_net_$1_bytes/ {print \$2 + 0}"; }
case $mode in
    standalone) ;;
    cluster) bench_services ;;
    *) echo "usage: bench/big-group.sh [standalone|cluster]" >&2; exit 64 ;;
esac
# REST_RATE=0: the calls are timed, not rationed.
REST_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
server_pid=$!
bench_wait_ready "$port"
token=$("$server_bin"/gateway token --user alice --data-dir "$data")
api="http://127.0.0.1:$port/v1"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }bench/big-group.sh $mode" > "$results/big-group.cmd"

# call METHOD PATH [BODY]: prints the call's time in ms; fails on an
# unexpected status.
call() {
    curl -sf -o /dev/null -w '%{time_total}\n' -X "$1" "$api$2" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' ${3:+--data-binary "$3"} | awk '{printf "%.1f\n", $1 * 1000}'
}
rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }

python3 -c 'import json; print(json.dumps({"type": "group", "name": "big", "members": [f"member-{n:05d}" for n in range(1, 9999)]}))' > "$data/create.json"
created=$(curl -sf -w '\n%{time_total}' -X POST "$api/chats" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary "@$data/create.json")
chat=$(echo "$created" | head -1 | python3 -c 'import json, sys; c = json.load(sys.stdin); assert len(c["members"]) == 9999; print(c["id"])')
create_ms=$(echo "$created" | tail -1 | awk '{printf "%.1f", $1 * 1000}')
echo "created chat $chat with 9,999 members in $create_ms ms" >&2

[ "$mode" = cluster ] && in_before=$(redis_bytes input) && out_before=$(redis_bytes output)
changes=()
for i in $(seq 1 10); do
    changes+=("$(call POST "/chats/$chat/members" '{"userId":"newcomer"}')")
    changes+=("$(call DELETE "/chats/$chat/members/newcomer")")
    echo "progress: $((2 * i))/20 membership changes" >&2
done
[ "$mode" = cluster ] && in_after=$(redis_bytes input) && out_after=$(redis_bytes output)
lists=()
for i in $(seq 1 50); do lists+=("$(call GET /chats)"); done
echo "progress: 50/50 chat lists" >&2

summary() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {printf "p50 %.1f ms, max %.1f ms", v[int((NR + 1) / 2)], v[NR]}'; }
{
    echo "POST /v1/chats, 9,999 members: $create_ms ms"
    echo "membership change announced to 10,000 members, 20 changes: $(summary "${changes[@]}")"
    if [ "$mode" = cluster ]; then
        echo "Redis received $(( (in_after - in_before) / 20 / 1000 )) kB and sent $(( (out_after - out_before) / 20 / 1000 )) kB per change"
    fi
    echo "GET /v1/chats (one chat of 9,999 members), 50 calls: $(summary "${lists[@]}")"
    echo "gateway peak resident memory: $(rss_mib) MiB"
} | tee "$results/big-group.txt"
