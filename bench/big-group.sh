#!/usr/bin/env bash
# What a group of 10,000 members (the most a chat may have) costs a
# standalone gateway over REST: creating it with 9,999, then 20
# membership changes (a 10,000th member added, then removed, ten times),
# each of which tells every member the chat as they see it; then 50 reads
# of the creator's chat list. Nobody is connected, so this is the
# server's own work, unless CONNECTED=N (at most 9,998): then N members
# hold a connection each (`loadtest run idle`) and each change sends every
# one of them a `chats` frame naming all 10,000. UNREAD=N: the creator
# sends N messages before the changes (`--example client`), so that every
# other member has N unread, which each change counts for every member. HISTORY=1: at the end the creator
# sends 200 messages, every member's delivered and read marks are set to
# the last of them in the database (as if all had read everything: each
# history item then names every other member twice more), and the
# creator reads the page of 200 ten times. LISTS=N: at the end the
# creator makes N more groups like the first and reads their chat list
# (N + 1 groups of 9,999) ten times at once; in a cluster with PGSS=1,
# PostgreSQL's statements over those lists go to lists-statements.txt
# (bench_pgss_dump in bench/common.sh). Usage:
#   [CONNECTED=N] [UNREAD=N] [HISTORY=1] [LISTS=N] [PGSS=1] bench/big-group.sh [standalone|cluster]
# `cluster`: one gateway on a private Redis and PostgreSQL, and what the
# changes sent Redis and Redis sent on (its total_net_input_bytes and
# total_net_output_bytes). Results:
# bench/results/<date>-big-group-<mode>/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
connected=${CONNECTED:-0}
unread=${UNREAD:-0}
history=${HISTORY:-0}
more_groups=${LISTS:-0}
source scripts/lib/services.sh
source bench/common.sh "big-group-$mode"
[ "$connected" -le 9998 ] || { echo "CONNECTED: at most 9,998" >&2; exit 64; }

server_pid=""
loadtest_pid=""
worker_pid=""
data=$(mktemp -d)
bench_stop_at_exit loadtest_pid worker_pid server_pid
port=$(free_port)
# Bytes Redis has received and sent (the gateway's subscription included).
redis_bytes() { redis-cli -u "$REDIS_URL" INFO stats | awk -F: "/^total_net_$1_bytes/ {print \$2 + 0}"; }
case $mode in
    standalone) ;;
    cluster) bench_services ;;
    *) echo "usage: bench/big-group.sh [standalone|cluster]" >&2; exit 64 ;;
esac
# REST_RATE=0, COMMAND_RATE=0: the calls and messages are timed, not
# rationed.
REST_RATE=0 COMMAND_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
server_pid=$!
bench_wait_ready "$port"
token=$("$server_bin"/gateway token --user alice --data-dir "$data")
api="http://127.0.0.1:$port/v1"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${CONNECTED:+CONNECTED=$CONNECTED }${UNREAD:+UNREAD=$UNREAD }${HISTORY:+HISTORY=$HISTORY }${LISTS:+LISTS=$LISTS }${PGSS:+PGSS=$PGSS }bench/big-group.sh $mode" > "$results/big-group.cmd"
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print int($2)}' | tail -1; }
# The members who connect are the load tool's users, member-0 onwards;
# with nobody connected the ids keep the 12 characters of earlier runs.
if [ "$connected" -gt 0 ]; then
    "$loadtest_bin" run idle --connections "$connected" --user-prefix member- --duration 3600 \
        --ws-url "ws://127.0.0.1:$port/ws" --http-url "http://127.0.0.1:$port" --data-dir "$data" \
        --report "$results/loadtest.json" --charts "$results/loadtest-charts" > "$results/loadtest.log" 2>&1 &
    loadtest_pid=$!
    until [ "$(metric chat_open_connections)" = "$connected" ]; do
        kill -0 "$loadtest_pid" 2>/dev/null || { echo "bench: the load tool stopped:" >&2; tail "$results/loadtest.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "$connected members connected" >&2
    members='[f"member-{n}" for n in range(0, 9998)]'
else
    members='[f"member-{n:05d}" for n in range(1, 9999)]'
fi

# call METHOD PATH [BODY]: prints the call's time in ms; fails on an
# unexpected status.
call() {
    curl -sf -o /dev/null -w '%{time_total}\n' -X "$1" "$api$2" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' ${3:+--data-binary "$3"} | awk '{printf "%.1f\n", $1 * 1000}'
}
rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
# The gateway's CPU seconds so far (user and system).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$server_pid/stat"; }

python3 -c "import json; print(json.dumps({'type': 'group', 'name': 'big', 'members': $members}))" > "$data/create.json"
create_started=$(date +%s.%N)
created=$(curl -sf -w '\n%{time_total}' -X POST "$api/chats" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary "@$data/create.json")
chat=$(echo "$created" | head -1 | python3 -c 'import json, sys; c = json.load(sys.stdin); assert len(c["members"]) == 9999; print(c["id"])')
create_ms=$(echo "$created" | tail -1 | awk '{printf "%.1f", $1 * 1000}')
echo "created chat $chat with 9,999 members in $create_ms ms" >&2
if [ "$connected" -gt 0 ]; then
    # Until every connected member's `created` frame is encoded: the
    # announcement follows the answer.
    until [ "$(metric 'chat_frames_out_total{type="chats"}')" = "$connected" ]; do sleep 0.02; done
    told_ms=$(echo "$create_started $(date +%s.%N)" | awk '{printf "%.0f", ($2 - $1) * 1000}')
fi

# send_messages N TAG: the creator sends N messages to the group, 100 at a
# time, and waits for their acks, which tell that they are stored. (The
# client reads no frame while it is writing one, nor this script while it
# is sending: thousands at once would fill the pipes both ways.) The
# client prints each frame it receives as "< {json}". A cluster's needs a
# worker, which stops before anything else is measured.
send_messages() {
    local count=$1 tag=$2 acked=0 frame
    cargo build --release -q -p gateway --example client
    if [ "$mode" = cluster ]; then
        WORKER_ID=worker-1 ADMIN_LISTEN=127.0.0.1:0 "$server_bin"/worker >> "$results/worker.log" 2>&1 &
        worker_pid=$!
    fi
    coproc CLIENT { target/release/examples/client "ws://127.0.0.1:$port/ws" "$token"; }
    for n in $(seq 1 "$count"); do
        echo "{\"type\":\"new\",\"ref\":\"$tag-$n\",\"chatId\":$chat,\"clientMessageId\":\"$tag-$n\",\"message\":\"$tag message $n\"}" >&"${CLIENT[1]}"
        [ $((n % 100)) = 0 ] || [ "$n" = "$count" ] || continue
        while [ "$acked" -lt "$n" ] && read -r frame <&"${CLIENT[0]}"; do
            case $frame in
                *'"type":"ack"'*"\"ref\":\"$tag-"*) acked=$((acked + 1)) ;;
                *'"type":"error"'*) echo "bench: a message was refused: $frame" >&2; break 2 ;;
            esac
        done
        [ $((n % 1000)) = 0 ] && echo "progress: $n/$count messages acked" >&2
    done
    for pid in "$CLIENT_PID" $worker_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    worker_pid=""
    [ "$acked" = "$count" ] || { echo "bench: $acked of $count messages acknowledged" >&2; exit 1; }
}

if [ "$unread" -gt 0 ]; then
    send_messages "$unread" unread
    echo "$unread messages sent: 9,998 members have them unread" >&2
fi

cpu_before=$(cpu_s)
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
if [ "$connected" -gt 0 ]; then
    # Every connected member's frames encoded, the creation's and 20
    # changes': what may remain to write is the last ones.
    until [ "$(metric 'chat_frames_out_total{type="chats"}')" = "$((21 * connected))" ]; do sleep 0.2; done
fi
cpu_after=$(cpu_s)
run_peak=$(rss_mib)

if [ "$history" = 1 ]; then
    send_messages 200 history
    mark="(SELECT MAX(message_id) FROM messages WHERE chat_id = $chat)"
    marks="UPDATE members SET delivered_mark = $mark, read_mark = $mark WHERE chat_id = $chat"
    case $mode in
        standalone) sqlite3 -cmd '.timeout 10000' "$data/chat.db" "$marks" ;;
        cluster) psql -q "$DATABASE_URL" -c "$marks" ;;
    esac
    echo "200 messages sent and marked read by all 9,999 members" >&2
    # The peak from here on: writing 5 to clear_refs starts VmHWM over.
    echo 5 > "/proc/$server_pid/clear_refs"
    history_rss_before=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status")
    history_cpu_before=$(cpu_s)
    pages=()
    for i in $(seq 1 10); do
        pages+=("$(curl -sf -o "$data/page.json" -w '%{time_total}\n' "$api/chats/$chat/messages?limit=200" \
            -H "Authorization: Bearer $token" | awk '{printf "%.1f\n", $1 * 1000}')")
        echo "progress: $i/10 history pages" >&2
    done
    history_cpu_after=$(cpu_s)
    history_peak=$(rss_mib)
    page_check=$(python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["messages"]; assert len(p) == 200 and all(m["status"] == "read" and len(m["readMembers"]) == 9998 for m in p), "not 200 messages read by all"; print("200 messages, each read by the 9,998 other members")' "$data/page.json")
    page_bytes=$(stat -c %s "$data/page.json")
fi

if [ "$more_groups" -gt 0 ]; then
    for i in $(seq 1 "$more_groups"); do
        curl -sf -o /dev/null -X POST "$api/chats" -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/json' --data-binary "@$data/create.json"
        echo "progress: $i/$more_groups more groups of 9,999" >&2
    done
    echo 5 > "/proc/$server_pid/clear_refs"
    lists_rss_before=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status")
    lists_cpu_before=$(cpu_s)
    [ "$mode" = cluster ] && bench_pgss_reset
    lists_ms=$(bench_ten_lists_at_once "$api" "$token" "$data")
    [ "$mode" = cluster ] && bench_pgss_dump "$results/lists-statements.txt"
    lists_cpu_after=$(cpu_s)
    lists_peak=$(rss_mib)
    lists_check=$(python3 -c '
import json, sys
groups = int(sys.argv[1])
lists = [json.load(open(path))["chats"] for path in sys.argv[2:]]
assert all(len(chats) == groups and all(len(c["members"]) == 9999 for c in chats) for chats in lists), "not every list names every group whole"
assert all(chats == lists[0] for chats in lists), "the lists differ"
print(f"{groups} groups of 9,999 each")' "$((more_groups + 1))" "$data"/list-*.json)
    lists_bytes=$(stat -c %s "$data/list-1.json")
fi

summary() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {printf "p50 %.1f ms, max %.1f ms", v[int((NR + 1) / 2)], v[NR]}'; }
{
    echo "POST /v1/chats, 9,999 members: $create_ms ms"
    if [ "$connected" -gt 0 ]; then
        echo "creation told to the $connected connected members (from the POST, polled every 20 ms): $told_ms ms"
    fi
    echo "membership change announced to 10,000 members, 20 changes: $(summary "${changes[@]}")"
    if [ "$mode" = cluster ]; then
        echo "Redis received $(( (in_after - in_before) / 20 / 1000 )) kB and sent $(( (out_after - out_before) / 20 / 1000 )) kB per change"
    fi
    echo "GET /v1/chats (one chat of 9,999 members), 50 calls: $(summary "${lists[@]}")"
    echo "gateway peak resident memory$([ "$history" = 1 ] && echo " before the history reads"): $run_peak MiB"
    echo "gateway CPU over the changes and the chat lists${CONNECTED:+, until every frame went out}: $(echo "$cpu_before $cpu_after" | awk '{printf "%.2f", $2 - $1}') s"
    if [ "$history" = 1 ]; then
        echo "GET /v1/chats/$chat/messages?limit=200 ($page_check, $page_bytes bytes), 10 calls: $(summary "${pages[@]}")"
        echo "gateway resident memory over the history reads: $history_rss_before MiB before, peak $history_peak MiB"
        echo "gateway CPU over the history reads: $(echo "$history_cpu_before $history_cpu_after" | awk '{printf "%.2f", $2 - $1}') s"
    fi
    if [ "$more_groups" -gt 0 ]; then
        echo "GET /v1/chats ($lists_check, $lists_bytes bytes), 10 at once: all answered in $lists_ms ms"
        echo "gateway resident memory over those reads: $lists_rss_before MiB before, peak $lists_peak MiB"
        echo "gateway CPU over those reads: $(echo "$lists_cpu_before $lists_cpu_after" | awk '{printf "%.2f", $2 - $1}') s"
    fi
    if [ "$connected" -gt 0 ]; then
        echo "connections open at the end: $(metric chat_open_connections) of $connected"
    fi
} | tee "$results/big-group.txt"
