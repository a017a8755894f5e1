#!/usr/bin/env bash
# What deleting a chat with a long history costs. A group of alice's and
# bob's is given COUNT messages (default 1,000,000), with their events
# and marks, straight into the database (bench_long_history in
# bench/common.sh). Then alice deletes the chat over REST. Reports the DELETE's
# status and time, how long until the chat's rows were all gone (the
# housekeeping purges them within a minute or so, or the deletion did it
# itself), and the slowest of the chat creations another user makes, one
# after another, from the deletion until then: what the purge costs the
# store's other writers. LURKER=1: bob has read nothing, which his unread
# count, read before the deletion for his `chats` `deleted` frame, then
# has to count. BODY_BYTES=N (even): each message's text (and its
# event's) N bytes longer, for what a purge step of large rows holds.
# Usage:
#   [COUNT=N] [LURKER=1] [BODY_BYTES=N] bench/delete-chat.sh [standalone|cluster]
# `cluster`: one gateway and one worker on a private Redis and
# PostgreSQL. Results: bench/results/<date>-delete-chat-<mode>/
# (SERVER_BIN, LABEL: see bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
count=${COUNT:-1000000}
source scripts/lib/services.sh
source bench/common.sh "delete-chat-$mode"

bench_history_servers "$mode"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${COUNT:+COUNT=$COUNT }${LURKER:+LURKER=$LURKER }${BODY_BYTES:+BODY_BYTES=$BODY_BYTES }bench/delete-chat.sh $mode" > "$results/delete-chat.cmd"

started=$(date +%s.%N)
bench_long_history "$chat" "$count" "${LURKER:-0}" "${BODY_BYTES:-0}"
rows() {
    sql "SELECT (SELECT COUNT(*) FROM messages WHERE chat_id = $chat) + (SELECT COUNT(*) FROM events WHERE chat_id = $chat)
              + (SELECT COUNT(*) FROM mark_ranges WHERE chat_id = $chat)"
}
seeded=$(rows)
printf 'progress: %s rows written in %.0f s\n' "$seeded" "$(echo "$(date +%s.%N) - $started" | bc)" >&2

bench_creations_until "$data/purged" "$api" "$carol" "$results/creations.txt" &
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
        bench_history_alive || exit 1
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
    echo "history:                   $count messages${BODY_BYTES:+ of $BODY_BYTES bytes more}, $seeded rows"
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
    bench_creations_summary "$results/creations.txt" "$purge_start" "$purge_end" "it was deleted"
} | tee "$results/summary.txt"
