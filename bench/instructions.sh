#!/usr/bin/env bash
# The standalone gateway's user-space instructions per message and per
# delivery, counted by callgrind: unlike CPU seconds, the count does not
# depend on how fast the machine is that day, so two builds can be compared
# on different days. Kernel work (the sockets' and the files' system calls,
# about two fifths of the gateway's CPU) is not counted.
#
# The gateway runs under callgrind twice, with the same low-rate fan-out
# for SHORT and for LONG seconds; connecting, creating the chats and
# shutting down cost the same in both, so the difference in instructions
# divided by the difference in messages (and deliveries) is the cost of
# the steady state. Usage:
#   bench/instructions.sh [SHORT LONG]     (default: 10 30)
# Results: bench/results/<date>-instructions/ (SERVER_BIN and LABEL as in
# bench/standalone.sh). At 30 messages a second every message is its own
# transaction: this is the per-message cost of a lightly loaded gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh instructions
bench_need_valgrind

short=${1:-10}
long=${2:-30}
load=(fanout --connections 200 --group-size 10 --rate 30)

server_pid=""
stop_server() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=""; }
trap stop_server EXIT

# counted SECONDS: one run under callgrind; its profile in
# run-SECONDS.callgrind, its load report in run-SECONDS.json.
counted() {
    local seconds=$1 data port
    data=$(mktemp -d)
    port=$(free_port)
    echo "bench: ${seconds}s of load under callgrind (about ten times slower than natively)"
    DRAIN_SECONDS=1 valgrind --tool=callgrind --callgrind-out-file="$results/run-$seconds.callgrind" \
        "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway-$seconds.log" 2>&1 &
    server_pid=$!
    bench_wait_ready "$port"
    bench_run "run-$seconds" "${load[@]}" --duration "$seconds" \
        --ws-url "ws://127.0.0.1:$port/ws" --http-url "http://127.0.0.1:$port" --data-dir "$data" --server-pid "$server_pid"
    stop_server
}

counted "$short"
counted "$long"

python3 - "$results" "$short" "$long" <<'EOF' | tee "$results/summary.txt"
import json, re, sys
results, short, long = sys.argv[1:]

def run(seconds):
    with open(f"{results}/run-{seconds}.callgrind") as f:
        total = next(int(m.group(1)) for line in f if (m := re.match(r"(?:summary|totals): (\d+)", line)))
    with open(f"{results}/run-{seconds}.json") as f:
        counters = json.load(f)["counters"]
    return total, counters["acked"], counters["deliveries"]

(i1, m1, d1), (i2, m2, d2) = run(short), run(long)
print(f"runs of {short}s and {long}s: {i1:,} and {i2:,} instructions; {m1:,} and {m2:,} messages acked; {d1:,} and {d2:,} deliveries")
if m2 <= m1 or d2 <= d1:
    sys.exit("bench: the longer run did not carry more messages; no difference to divide")
print(f"user-space instructions per message:  {(i2 - i1) / (m2 - m1):,.0f}")
print(f"user-space instructions per delivery: {(i2 - i1) / (d2 - d1):,.0f} (the message's share included)")
EOF
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }bench/instructions.sh $short $long" > "$results/summary.cmd"
gzip -f -9 "$results"/run-*.callgrind
echo "bench: done; results in $results (where the instructions go: zcat run-$long.callgrind.gz > p; callgrind_annotate --inclusive=yes p)"
bench_end
