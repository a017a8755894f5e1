#!/usr/bin/env bash
# Benchmarks of a cluster on this machine: 2 gateways and 2 workers on a
# private Redis and PostgreSQL. Usage:
#   bench/cluster.sh [ack-latency ack-latency-19k ack-latency-3k burst-one-chat burst-two-chats throughput throughput-max idle idle-k20 idle-k20-g2 receipts churn silent reconnect reconnect-k20]
# (default: all but ack-latency-3k, the bursts and the k20s). Results: bench/results/<date>-cluster/
# SERVER_BIN=DIR runs another build's binaries (LABEL=NAME suffixes the
# result folder), for a before/after comparison on the same day.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
source bench/common.sh cluster

pids=()
stop_cluster() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_cluster; services_stop' EXIT
# An acked message is durable only if PostgreSQL flushed its log to disk.
export SERVICES_PG_FSYNC=${SERVICES_PG_FSYNC:-on}
# Four server processes share this machine's two cores with Redis,
# PostgreSQL and the client, so each runs one runtime thread, as a pod
# whose CPU limit is one core would: tokio sizes its runtime by the CPUs
# it sees, which in a container follows the CPU limit, but here each
# process sees both cores. Against two threads each: less CPU per
# delivery and a shorter tail, and no less at saturation
# (docs/benchmarks-journal.md, 2026-12-04). CLUSTER_THREADS=2 for the old.
threads=${CLUSTER_THREADS:-1}
echo "TOKIO_WORKER_THREADS=$threads (each gateway and worker); PostgreSQL fsync=$SERVICES_PG_FSYNC" > "$results/cluster-settings.txt"

# start_cluster [ENV=VALUE...]: fresh Redis, PostgreSQL, 2 workers, 2
# gateways, the gateways with these settings.
start_cluster() {
    stop_cluster
    services_stop 2>/dev/null || true
    bench_services
    export DRAIN_SECONDS=1
    for n in 1 2; do
        TOKIO_WORKER_THREADS=$threads WORKER_ID=worker-$n ADMIN_LISTEN=127.0.0.1:0 "$server_bin"/worker > "$results/worker-$n.log" 2>&1 &
        pids+=($!)
    done
    ports=()
    for n in 1 2; do
        port=$(free_port)
        env "$@" TOKIO_WORKER_THREADS=$threads NODE_ID=gw-$n "$server_bin"/gateway --listen "127.0.0.1:$port" > "$results/gateway-$n.log" 2>&1 &
        pids+=($!)
        ports+=("$port")
        bench_wait_ready "$port"
    done
    server_pids=()
    for pid in "${pids[@]}"; do server_pids+=(--server-pid "$pid"); done
    urls=(--ws-url "ws://127.0.0.1:${ports[0]}/ws,ws://127.0.0.1:${ports[1]}/ws" --http-url "http://127.0.0.1:${ports[0]}" "${server_pids[@]}")
}

# What Redis holds as a scenario ends: its memory, and the entries of the
# command streams (the workers trim what they applied on every lease
# round, a third of LEASE_TTL_MS, since the thirty-ninth session).
redis_held() {
    local entries=0 shard
    for shard in $(seq 0 15); do
        entries=$((entries + $(redis-cli -u "$REDIS_URL" XLEN "chat:cmd:$shard")))
    done
    local memory
    memory=$(redis-cli -u "$REDIS_URL" INFO memory | awk -F: '/^used_memory:/ {print $2 + 0}')
    echo "Redis at the end of $1: used_memory $memory bytes, command stream entries $entries" | tee "$results/$1-redis.txt"
}

scenarios=("${@:-ack-latency ack-latency-19k throughput throughput-max idle receipts churn silent reconnect}")
for scenario in ${scenarios[*]}; do
    case $scenario in
        ack-latency) start_cluster; bench_run ack-latency fanout --connections 2000 --group-size 10 --rate 2000 --duration 20 "${urls[@]}" ;;
        # The same with half as much again: the machine nearly full, as
        # 2,000 msg/s fill a slower day's machine (docs/benchmarks-journal.md).
        # The same rate over 19,000 connections (9,500 a gateway), each
        # member hearing about an event a second, as in standalone's
        # fanout-19k.
        ack-latency-19k) start_cluster; bench_run ack-latency-19k fanout --connections 19000 --group-size 10 --rate 2000 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        ack-latency-3k) start_cluster; bench_run ack-latency-3k fanout --connections 2000 --group-size 10 --rate 3000 --duration 20 "${urls[@]}" ;;
        # Each sender sends two messages back to back, without waiting for
        # the first ack: to one chat (no hold), or to two chats, which lie on
        # different stream shards 15 times in 16, so the second waits for the
        # first's ack (gateway/src/command_order.rs). Same rate, same layout.
        burst-one-chat) start_cluster; bench_run burst-one-chat fanout --connections 2000 --group-size 10 --chats-per-user 1 --burst 2 --rate 2000 --duration 20 "${urls[@]}" ;;
        burst-two-chats) start_cluster; bench_run burst-two-chats fanout --connections 2000 --group-size 10 --chats-per-user 2 --burst 2 --rate 2000 --duration 20 "${urls[@]}" ;;
        idle-k20) start_cluster; bench_run idle-k20 idle --connections 10000 --chats-per-user 20 --group-size 10 --connect-rate 3000 --duration 15 "${urls[@]}" ;;
        # Chats of two, one member on each gateway: every membership is a
        # chat a gateway subscribes to, as in a fleet of many gateways.
        idle-k20-g2) start_cluster; bench_run idle-k20-g2 idle --connections 10000 --chats-per-user 20 --group-size 2 --connect-rate 3000 --duration 15 "${urls[@]}" ;;
        throughput) start_cluster; bench_run throughput fanout --connections 2000 --group-size 2 --rate 12000 --duration 20 "${urls[@]}" ;;
        # Offered more than the cluster stores, to find its most.
        throughput-max) start_cluster; bench_run throughput-max fanout --connections 2000 --group-size 2 --rate 20000 --duration 20 "${urls[@]}" ;;
        idle) start_cluster; bench_run idle idle --connections 10000 --connect-rate 3000 --duration 15 "${urls[@]}" ;;
        # The standalone scenarios of the same names, over two gateways:
        # presence counted in Redis, sync read from PostgreSQL.
        receipts) start_cluster; bench_run receipts receipts --connections 2000 --group-size 10 --rate 500 --duration 20 "${urls[@]}" ;;
        churn) start_cluster; bench_run churn churn --connections 2000 --churn-rate 200 --duration 20 "${urls[@]}" ;;
        silent) start_cluster HEARTBEAT_TIMEOUT_MS=5000; bench_run silent silent --connections 11120 --group-size 10 --heartbeat-timeout-ms 5000 --ping-ms 2000 --connect-rate 3000 --duration 15 "${urls[@]}" ;;
        reconnect) start_cluster; bench_run reconnect reconnect --connections 19000 --group-size 10 --rate 200 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        # The same storm with every user in 20 chats of 10 (38,000 chats):
        # each client syncs 20 chats, and each return announces it to 180
        # co-members.
        reconnect-k20) start_cluster; bench_run reconnect-k20 reconnect --chats-per-user 20 --connections 19000 --group-size 10 --rate 200 --connect-rate 3000 --duration 20 "${urls[@]}" ;;
        *) echo "bench: unknown scenario $scenario" >&2; exit 2 ;;
    esac
    redis_held "$scenario"
done
# Every scenario's figures side by side, on the terminal and in the folder.
echo; "$loadtest_bin" summary "$results" | tee "$results/summary.txt" || true
echo "bench: done; results in $results"
bench_end
