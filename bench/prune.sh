#!/usr/bin/env bash
# What retention's first prune of a long history costs: after
# RETENTION_DAYS was lowered, or on a database kept whole until then. A
# group of alice's and bob's is given COUNT messages (default 1,000,000)
# with their events, all of 2023, straight into the database
# (bench_long_history in bench/common.sh); the servers keep 7 days or the
# newest 10,000 events of a chat, so the next prune (within a minute)
# deletes all but 10,000. Reports how long until the chat kept only
# those, the prune's own log line, and the slowest of the chat creations
# another user makes, one after another, meanwhile: what the prune costs
# the store's other writers. Usage:
#   [COUNT=N] bench/prune.sh [standalone|cluster]
# `cluster`: one gateway and one worker (which prunes) on a private Redis
# and PostgreSQL. Results: bench/results/<date>-prune-<mode>/ (SERVER_BIN,
# LABEL: see bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-standalone}
count=${COUNT:-1000000}
kept=10000
source scripts/lib/services.sh
source bench/common.sh "prune-$mode"

export RETENTION_DAYS=7 RETENTION_EVENTS=$kept
bench_history_servers "$mode"
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }${COUNT:+COUNT=$COUNT }bench/prune.sh $mode" > "$results/prune.cmd"
# The servers pruned once at their start; the next is due a minute after.
bench_long_history "$chat" "$count"
echo "progress: written; waiting for the next prune" >&2

bench_creations_until "$data/pruned" "$api" "$carol" "$results/creations.txt" &
writer_pid=$!
started=$(date +%s.%N)
window=$((count - kept + 1))
first_kept() { sql "SELECT first_retained_event_id FROM chats WHERE id = $chat"; }
until [ "$(first_kept)" -ge "$window" ]; do
    bench_history_alive || exit 1
    echo "progress: $(printf '%.0f' "$(echo "$(date +%s.%N) - $started" | bc)") s, the chat keeps events from $(first_kept) (of $count; to keep from $window)" >&2
    sleep 1
done
log=$(ls "$results"/worker.log 2>/dev/null || echo "$results/gateway.log")
until grep -q "pruned events outside the retention window" "$log"; do
    bench_history_alive || exit 1
    sleep 0.2
done
touch "$data/pruned"
wait "$writer_pid"
writer_pid=""
left=$(sql "SELECT COUNT(*) FROM events WHERE chat_id = $chat")
{
    echo "mode:                      $mode"
    echo "history:                   $count events, of which the newest $kept are kept"
    echo "events left in the chat:   $left"
    prune=$(grep -h "pruned events outside the retention window" "$log" | tail -1)
    echo "prune:                     ${prune#*window }"
    # The prune's span, from its log line's time and `took`, or without
    # one (an older build) the whole wait.
    prune_end=$(date -d "${prune%% *}" +%s.%N)
    if [[ $prune == *took=* ]]; then
        took=$(echo "$prune" | sed -E 's/.*took=([0-9.]+)(m?s).*/\1 \2/' | awk '{print $2 == "ms" ? $1 / 1000 : $1}')
        prune_start=$(echo "$prune_end - $took" | bc)
    else
        prune_start=$started
    fi
    bench_creations_summary "$results/creations.txt" "$prune_start" "$prune_end" "it was pruned"
} | tee "$results/summary.txt"
