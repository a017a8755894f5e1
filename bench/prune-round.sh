#!/usr/bin/env bash
# What a round of retention costs when every chat has just outgrown its
# count window by one event: the steady state of chats with more history
# than RETENTION_EVENTS (default 10,000) that get a message or so a
# minute. CHATS groups (default 200) are given 10,001 events each, all of
# 2023, straight into the database; the next prune (within a minute)
# deletes one event of each. Reports the prune's log line, its `took`
# being what finding and moving the windows cost. Usage:
#   [CHATS=N] bench/prune-round.sh [standalone|cluster]
# `cluster`: one gateway and one worker (which prunes) on a private Redis
# and PostgreSQL. Results: bench/results/<date>-prune-round-<mode>/
# (SERVER_BIN, LABEL: see bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
chats=${CHATS:-200}
kept=10000
source scripts/lib/services.sh
source bench/common.sh "prune-round-$mode"

export RETENTION_DAYS=7 RETENTION_EVENTS=$kept
bench_history_servers "$mode"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${CHATS:+CHATS=$CHATS }bench/prune-round.sh $mode" > "$results/prune-round.cmd"
# The servers pruned once at their start; the next is due a minute after.
# Ids far above those the servers give, which the run does not reach.
first=1000001
last=$((first + chats - 1))
echo "progress: writing $chats chats of $((kept + 1)) events" >&2
sql "WITH RECURSIVE c(i) AS (SELECT $first UNION ALL SELECT i + 1 FROM c WHERE i < $last)
     INSERT INTO chats (id, kind, name, creator, created_at, last_message_id, last_event_id, first_retained_event_id, last_activity_at)
     SELECT i, 'group', 'long', 'alice', 1700000000000, $((kept + 1)), $((kept + 1)), 1, 1700000000000 FROM c"
sql "WITH RECURSIVE c(i) AS (SELECT $first UNION ALL SELECT i + 1 FROM c WHERE i < $last),
       n(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM n WHERE j < $((kept + 1)))
     INSERT INTO events (chat_id, id, message_id, kind, payload, created_at)
     SELECT i, j, j, 'new', $(padding_sql 200), 1700000000000 + j FROM c CROSS JOIN n"
echo "progress: written; waiting for the next prune" >&2
log=$(ls "$results"/worker.log 2>/dev/null || echo "$results/gateway.log")
waited=0
until grep -q "pruned events outside the retention window" "$log"; do
    bench_history_alive || exit 1
    [ $((waited % 10)) = 0 ] && echo "progress: ${waited} s of waiting for the prune" >&2
    sleep 1
    waited=$((waited + 1))
done
{
    echo "mode:                      $mode"
    echo "history:                   $chats chats of $((kept + 1)) events, the newest $kept of each kept"
    echo "events left in them:       $(sql "SELECT COUNT(*) FROM events WHERE chat_id >= $first")"
    prune=$(grep -h "pruned events outside the retention window" "$log" | tail -1)
    echo "prune:                     ${prune#*window }"
} | tee "$results/summary.txt"
