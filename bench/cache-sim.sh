#!/usr/bin/env bash
# What a delivery costs in user-space instructions and cache misses at
# several connection counts, simulated by callgrind: this machine's CPU
# exposes no hardware counters to perf. The gateway runs under callgrind
# with a 48 KiB L1 and a 2 MiB last level (the core's L2), instrumented
# only for WINDOW seconds of `fanout` (groups of 10, 20 messages/s, pings
# every 300 s so that only deliveries differ) once every client has
# connected. The heartbeat sweep, which visits every connection four
# times a second, is reported apart. Usage:
#   bench/cache-sim.sh [WINDOW [CONNECTIONS...]]   (default: 30 2000 19000)
# Results: bench/results/<date>-cache-sim/ (SERVER_BIN and LABEL as in
# bench/standalone.sh). The gateway's /metrics must not be scraped while
# it runs under valgrind: its process collector reads the auxiliary
# vector, which valgrind replaces, and crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh cache-sim
bench_need_valgrind

window=${1:-30}
shift || true
counts=("${@:-2000 19000}")
rate=20
group=10

server_pid="" load_pid=""
stop_all() {
    [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    server_pid="" load_pid=""
}
trap stop_all EXIT

# simulated CONNECTIONS: one gateway under callgrind, its window's profile
# in CONNECTIONS.callgrind and the load's report in CONNECTIONS.json.
simulated() {
    local conns=$1 data port established
    data=$(mktemp -d)
    port=$(free_port)
    echo "bench: $conns connections: the gateway under callgrind (connecting takes a while)"
    HEARTBEAT_TIMEOUT_MS=600000 DRAIN_SECONDS=1 valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no \
        --D1=49152,12,64 --LL=2097152,16,64 --callgrind-out-file="$results/$conns.callgrind" \
        "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway-$conns.log" 2>&1 &
    server_pid=$!
    bench_wait_ready "$port"
    echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }$0 $window ${counts[*]}" > "$results/$conns.cmd"
    "$loadtest_bin" run fanout --connections "$conns" --group-size "$group" --rate "$rate" --connect-rate 1000 \
        --duration $((window + 30)) --ping-ms 300000 --heartbeat-timeout-ms 600000 \
        --ws-url "ws://127.0.0.1:$port/ws" --http-url "http://127.0.0.1:$port" --data-dir "$data" \
        --report "$results/$conns.json" --charts "$results/$conns" > "$results/loadtest-$conns.txt" 2>&1 &
    load_pid=$!
    while established=$(ss -Htn state established "( sport = :$port )" | wc -l); [ "$established" -lt "$conns" ]; do
        kill -0 "$load_pid" 2>/dev/null || { echo "bench: the load tool stopped early" >&2; return 1; }
        printf '\r  connected %d of %d' "$established" "$conns" >&2
        sleep 1
    done
    # Let the chats' creation and the presence announcements settle before
    # the window, so that it holds deliveries alone.
    for ((s = 15; s > 0; s--)); do printf '\r  connected; the window opens in %2d s ' "$s" >&2; sleep 1; done
    callgrind_control -i on "$server_pid" > /dev/null 2>&1
    for ((s = 0; s < window; s++)); do printf '\r  instrumented: %d of %d s          ' "$s" "$window" >&2; sleep 1; done
    callgrind_control -d "$server_pid" > /dev/null 2>&1
    callgrind_control -i off "$server_pid" > /dev/null 2>&1
    printf '\r  window done; waiting for the load to end      \n' >&2
    wait "$load_pid" || true
    load_pid=""
    stop_all
    rm -rf "$data"
}

for conns in ${counts[*]}; do simulated "$conns"; done

python3 - "$results" "$window" "$rate" "$group" ${counts[*]} <<'EOF' | tee "$results/summary.txt"
import json, re, subprocess, sys
results, window, rate, group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"{'connections':>12} {'instr/delivery':>15} {'LL misses/delivery':>19} {'sweep: instr':>13} {'sweep: LL misses':>17}")
for conns in sys.argv[5:]:
    dump = f"{results}/{conns}.callgrind.1"
    with open(dump) as f:
        text = f.read()
    events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
    totals = dict(zip(events, map(int, re.search(r"^summary: (.*)$", text, re.M).group(1).split())))
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--show=Ir,DLmr", "--threshold=100", dump],
                               capture_output=True, text=True).stdout
    sweep = next((l for l in annotated.splitlines() if "heartbeat::sweep::{{closure}}" in l), "")
    numbers = ([int(n.replace(",", "")) for n in re.findall(r"([\d,]+) \(", sweep)] + [0, 0])[:2]
    with open(f"{results}/{conns}.json") as f:
        per_second = json.load(f)["deliveries_per_second"]
    deliveries = rate * group * window
    if abs(per_second - rate * group) > 0.05 * rate * group:
        print(f"bench: {conns}: the load delivered {per_second:.0f}/s, not {rate * group}/s; per-delivery figures are off")
    print(f"{conns:>12} {(totals['Ir'] - numbers[0]) / deliveries:>15,.0f} {(totals['DLmr'] - numbers[1]) / deliveries:>19,.1f}"
          f" {numbers[0] / totals['Ir']:>12.0%} {numbers[1] / max(totals['DLmr'], 1):>16.0%}")
print(f"(per delivery, the message's share included and the heartbeat sweep set aside; {deliveries:,} deliveries a window)")
EOF
gzip -f -9 "$results"/*.callgrind*
echo "bench: done; results in $results (zcat N.callgrind.1.gz > p; callgrind_annotate --show=DLmr --sort=DLmr p)"
