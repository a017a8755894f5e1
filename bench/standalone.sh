#!/usr/bin/env bash
# Benchmarks of a standalone gateway (SQLite, in-process worker) on this
# machine. Each scenario gets a fresh server. Usage:
#   bench/standalone.sh [idle idle-k20 fanout fanout-19k fanout-max fanout-80k fanout-g100 fanout-g100-100k fanout-g100-max fanout-g1000 receipts churn silent reconnect reconnect-k20 floor]
# (default: all but idle-k20 and reconnect-k20). Results: bench/results/<date>-standalone/.
# SERVER_BIN=DIR runs another build's binaries (LABEL=NAME suffixes the
# result folder), for a before/after comparison on the same day.
# SERVER_ENV="NAME=VALUE ..." sets variables for the gateway only (not the
# load tool), e.g. SERVER_ENV=TOKIO_WORKER_THREADS=1; recorded in each
# run's .cmd.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh standalone

server_pid=""
stop_server() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=""; }
trap stop_server EXIT

# start_server [ENV=VALUE...]: a fresh standalone gateway on a free port.
start_server() {
    stop_server
    data=$(mktemp -d)
    port=$(free_port)
    # shellcheck disable=SC2086 # SERVER_ENV is a list of assignments
    env ${SERVER_ENV:-} "$@" DRAIN_SECONDS=1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
    server_pid=$!
    bench_wait_ready "$port"
    urls=(--ws-url "ws://127.0.0.1:$port/ws" --http-url "http://127.0.0.1:$port" --data-dir "$data" --server-pid "$server_pid")
}

scenarios=("${@:-idle fanout fanout-19k fanout-max fanout-80k fanout-g100 fanout-g100-100k fanout-g100-max fanout-g1000 receipts churn silent reconnect floor}")
for scenario in ${scenarios[*]}; do
    case $scenario in
        idle) start_server; bench_run idle idle --connections 19000 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        # The same connections, each user a member of 20 chats of 10 (38,000
        # chats): what a user's chats add to a connection's memory.
        idle-k20) start_server; bench_run idle-k20 idle --connections 19000 --chats-per-user 20 --group-size 10 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        fanout) start_server; bench_run fanout fanout --connections 2000 --group-size 10 --rate 2000 --duration 20 "${urls[@]}" ;;
        # The same rate spread over as many connections as one process may
        # hold: 1,900 groups, each member getting about one event a second.
        fanout-19k) start_server; bench_run fanout-19k fanout --connections 19000 --group-size 10 --rate 2000 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        fanout-max) start_server; bench_run fanout-max fanout --connections 2000 --group-size 10 --rate 10000 --duration 20 "${urls[@]}" ;;
        # The highest rate found with p99 under 100 ms (docs/benchmarks-journal.md).
        fanout-80k) start_server; bench_run fanout-80k fanout --connections 2000 --group-size 10 --rate 8000 --duration 20 "${urls[@]}" ;;
        fanout-g100) start_server; bench_run fanout-g100 fanout --connections 2000 --group-size 100 --rate 200 --duration 20 "${urls[@]}" ;;
        # 100k and the most deliveries/s with groups of 100 (docs/benchmarks-journal.md).
        fanout-g100-100k) start_server; bench_run fanout-g100-100k fanout --connections 2000 --group-size 100 --rate 1000 --duration 20 "${urls[@]}" ;;
        fanout-g100-max) start_server; bench_run fanout-g100-max fanout --connections 2000 --group-size 100 --rate 6000 --duration 20 "${urls[@]}" ;;
        fanout-g1000) start_server; bench_run fanout-g1000 fanout --connections 2000 --group-size 1000 --rate 20 --duration 20 "${urls[@]}" ;;
        receipts) start_server; bench_run receipts receipts --connections 2000 --group-size 10 --rate 500 --duration 20 "${urls[@]}" ;;
        churn) start_server; bench_run churn churn --connections 2000 --churn-rate 200 --duration 20 "${urls[@]}" ;;
        # 1,112 groups of 10: one member of each watches, nine fall silent,
        # 10,008 silent clients in all.
        silent) start_server HEARTBEAT_TIMEOUT_MS=5000; bench_run silent silent --connections 11120 --group-size 10 --heartbeat-timeout-ms 5000 --ping-ms 2000 --connect-rate 3000 --duration 15 "${urls[@]}" ;;
        reconnect) start_server; bench_run reconnect reconnect --connections 19000 --group-size 10 --rate 200 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        # The same storm with every user in 20 chats of 10 (38,000 chats):
        # each client syncs 20 chats, and each return announces it to 180
        # co-members.
        reconnect-k20) start_server; bench_run reconnect-k20 reconnect --chats-per-user 20 --connections 19000 --group-size 10 --rate 200 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        # No server: the kernel's cost of the writes alone (see docs/benchmarks.md).
        floor) bench_floor floor ; bench_floor floor-tasks --via-tasks ;;
        *) echo "bench: unknown scenario $scenario" >&2; exit 2 ;;
    esac
done
stop_server
# Every scenario's figures side by side, on the terminal and in the folder
# (`floor` alone writes no run report: its figures are above).
if compgen -G "$results/*.json" > /dev/null; then
    echo; "$loadtest_bin" summary "$results" | tee "$results/summary.txt" || true
fi
echo "bench: done; results in $results"
bench_end
