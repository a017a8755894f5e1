#!/usr/bin/env bash
# What deleting a chat with a long history costs. A group of alice's and
# bob's is given COUNT messages (default 1,000,000), each with its `new`
# event, bob's delivered and read ranges, one per 10 messages each, and
# both members' marks at the last message (they have read it all):
# written straight into the database in the shape the store writes them,
# since sending a million messages would take minutes and measure the
# sends. Then alice deletes the chat over REST. Reports the DELETE's
# status and time, how long until the chat's rows were all gone (the
# housekeeping purges them within a minute or so, or the deletion did it
# itself), and the slowest of the chat creations another user makes, one
# after another, from the deletion until then: what the purge costs the
# store's other writers. Usage:
#   [COUNT=N] bench/delete-chat.sh [standalone|cluster]
# `cluster`: one gateway and one worker on a private Redis and
# PostgreSQL. Results: bench/results/<date>-delete-chat-<mode>/
# (SERVER_BIN, LABEL: see bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
count=${COUNT:-1000000}
source scripts/lib/services.sh
source bench/common.sh "delete-chat-$mode"

server_pid=""
worker_pid=""
writer_pid=""
data=$(mktemp -d)
bench_stop_at_exit writer_pid worker_pid server_pid
port=$(free_port)
case $mode in
    standalone) sql() { sqlite3 -cmd '.timeout 10000' "$data/chat.db" "$@"; } ;;
    cluster)
        bench_services
        sql() { psql -Atq "$DATABASE_URL" -c "$@"; }
        ;;
    *) echo "usage: bench/delete-chat.sh [standalone|cluster]" >&2; exit 64 ;;
esac
# REST_RATE=0: the chat creations meanwhile are timed, not rationed.
REST_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
server_pid=$!
if [ "$mode" = cluster ]; then
    WORKER_ID=worker-1 ADMIN_LISTEN=127.0.0.1:0 "$server_bin"/worker > "$results/worker.log" 2>&1 &
    worker_pid=$!
fi
bench_wait_ready "$port"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${COUNT:+COUNT=$COUNT }bench/delete-chat.sh $mode" > "$results/delete-chat.cmd"
alice=$("$server_bin"/gateway token --user alice --data-dir "$data")
carol=$("$server_bin"/gateway token --user carol --data-dir "$data")
api="http://127.0.0.1:$port/v1"
chat=$(curl -sf -X POST "$api/chats" -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' \
    --data-binary '{"type":"group","name":"long","members":["bob"]}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

echo "progress: writing $count messages into chat $chat" >&2
started=$(date +%s.%N)
sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
     INSERT INTO messages (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id)
     SELECT $chat, i, 'alice', 'c' || i, 'message number ' || i || ' of a long history', '[]', 1700000000000 + i, i FROM n"
echo "progress: messages written; their events" >&2
sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
     INSERT INTO events (chat_id, id, message_id, kind, payload, created_at)
     SELECT $chat, i, i, 'new', '{\"chatId\":$chat,\"eventId\":' || i || ',\"userId\":\"alice\",\"messageId\":' || i
       || ',\"timestamp\":' || (1700000000000 + i) || ',\"type\":\"new\",\"clientMessageId\":\"c' || i
       || '\",\"message\":\"message number ' || i || ' of a long history\"}', 1700000000000 + i FROM n"
echo "progress: events written; bob's marks" >&2
sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count / 10)
     INSERT INTO mark_ranges (chat_id, user_id, kind, first_message_id, last_message_id, at)
     SELECT $chat, 'bob', k.kind, i * 10 - 9, i * 10, 1700000000000 + i * 10 FROM n
     CROSS JOIN (SELECT 'dlvrd' AS kind UNION ALL SELECT 'read') k"
sql "UPDATE chats SET last_message_id = $count, last_event_id = $count WHERE id = $chat"
# Both have read everything, as members of a chat in use mostly have: a
# member's unread count, which the deletion tells them, then costs nothing
# (see docs/benchmarks.md for one who read nothing).
sql "UPDATE members SET delivered_mark = $count, read_mark = $count WHERE chat_id = $chat"
rows() {
    sql "SELECT (SELECT COUNT(*) FROM messages WHERE chat_id = $chat) + (SELECT COUNT(*) FROM events WHERE chat_id = $chat)
              + (SELECT COUNT(*) FROM mark_ranges WHERE chat_id = $chat)"
}
seeded=$(rows)
printf 'progress: %s rows written in %.0f s\n' "$seeded" "$(echo "$(date +%s.%N) - $started" | bc)" >&2

# carol creates chats one after another until the history is gone; each
# call's status and seconds go to a file.
creations() {
    while [ ! -e "$data/purged" ]; do
        printf '%s ' "$(date +%s.%N)"
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$api/chats" -H "Authorization: Bearer $carol" \
            -H 'Content-Type: application/json' --data-binary '{"type":"group","name":"meanwhile","members":[]}'
    done > "$results/creations.txt"
}
creations &
writer_pid=$!
deleted_at=$(date +%s.%N)
answer=$(curl -s -o "$results/delete.body" -w '%{http_code} %{time_total}' -X DELETE "$api/chats/$chat" -H "Authorization: Bearer $alice")
echo "progress: DELETE answered $answer" >&2
status=${answer% *}
if [ "$status" = 204 ]; then
    # Whether any row is left, which unlike counting them costs the
    # purge nothing.
    any_left() {
        sql "SELECT CASE WHEN EXISTS (SELECT 1 FROM messages WHERE chat_id = $chat)
                           OR EXISTS (SELECT 1 FROM events WHERE chat_id = $chat)
                           OR EXISTS (SELECT 1 FROM mark_ranges WHERE chat_id = $chat) THEN 1 ELSE 0 END"
    }
    waited=0
    until [ "$(any_left)" = 0 ]; do
        kill -0 "$server_pid" 2>/dev/null || { echo "bench: the gateway stopped" >&2; exit 1; }
        echo "progress: ${waited} s since the deletion, the chat's rows still there" >&2
        sleep 1
        waited=$((waited + 1))
    done
fi
purged_after=$(echo "$(date +%s.%N) - $deleted_at" | bc)
touch "$data/purged"
wait "$writer_pid"
writer_pid=""
{
    echo "mode:                      $mode"
    echo "history:                   $count messages, $seeded rows"
    echo "DELETE:                    status $status in $(printf '%.3f' "${answer#* }") s"
    if [ "$status" = 204 ]; then
        printf 'rows gone after:           %.1f s (the housekeeping runs once a minute)\n' "$purged_after"
    else
        echo "rows gone after:           not deleted; $(rows) rows remain"
    fi
    # The purge's own span, from its log line's time and `took`.
    purge=$(grep -h "purged a deleted chat's history" "$results"/*.log || true)
    if [ -n "$purge" ]; then
        echo "purge:                     ${purge#*history }"
        purge_end=$(date -d "${purge%% *}" +%s.%N)
        took=$(echo "$purge" | sed -E 's/.*took=([0-9.]+)(m?s).*/\1 \2/' | awk '{print $2 == "ms" ? $1 / 1000 : $1}')
        purge_start=$(echo "$purge_end - $took" | bc)
    else
        purge_start=$deleted_at
        purge_end=$(echo "$deleted_at + $purged_after" | bc)
    fi
    # A creation counts when its span meets the purge's (or, without a
    # purge, the deletion's and its rows').
    awk -v from="$purge_start" -v to="$purge_end" '
        {n++; if ($2 !~ /^2/) bad++; if ($3 > max) max = $3; sum += $3}
        $1 <= to && $1 + $3 >= from {during++; if ($3 > worst) worst = $3}
        END {
            printf "chat creations meanwhile:  %d, %d failed, mean %.1f ms, slowest %.1f ms\n", n, bad, 1000 * sum / n, 1000 * max
            printf "  while it was deleted:    %d, slowest %.1f ms\n", during, 1000 * worst
        }' "$results/creations.txt"
} | tee "$results/summary.txt"
