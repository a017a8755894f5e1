#!/usr/bin/env bash
# What a standalone gateway costs with no client at all: its CPU seconds
# and system calls while it sits idle. Usage:
#   bench/idle-server.sh [SECONDS] [PAIRS]
# SERVER_BIN=DIR measures another build's gateway; BASE_BIN=DIR also
# measures that one, alternating, PAIRS times (default 3), for a
# before/after comparison. Each run gets a fresh data folder and port.
# Needs strace for the system-call count.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh idle-server
seconds=${1:-30}
pairs=${2:-3}
builds=("$server_bin")
[ -n "${BASE_BIN:-}" ] && builds=("${BASE_BIN}" "$server_bin")

measure() {
    local bin=$1 data port before after calls
    data=$(mktemp -d)
    port=$(free_port)
    "$bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
    pid=$!
    bench_wait_ready "$port"
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    for ((s = 0; s < seconds; s++)); do
        printf '\r  %s: %d of %d s' "$bin" "$s" "$seconds" >&2
        sleep 1
    done
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    # strace ends by its timeout, which is not a failure here.
    calls=$({ timeout 5 strace -f -c -p "$pid" 2>&1 || true; } | awk '/ total$/ {print $4}')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    rm -rf "$data"
    printf '\r' >&2
    # /proc counts CPU time in ticks of 1/100 s.
    printf '%-40s %8.2f %14s\n' "$bin" "$(awk -v t=$((after - before)) 'BEGIN {print t / 100}')" "${calls:-?}"
}

echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${BASE_BIN:+BASE_BIN=$BASE_BIN }$0 $seconds $pairs" > "$results/idle-server.cmd"
{
    # (A subshell, as part of the pipe: the trap and `pid` live in it.) A
    # failure midway must not leave a gateway running under later
    # benchmarks.
    pid=""
    trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null' EXIT
    printf '%-40s %8s %14s\n' "build" "CPU-s in ${seconds} s" "syscalls in 5 s"
    for ((i = 1; i <= pairs; i++)); do
        # Alternate which build goes first, so that a drift of the machine
        # does not favour one.
        if (( i % 2 )); then order=("${builds[@]}"); else order=(); for ((j = ${#builds[@]} - 1; j >= 0; j--)); do order+=("${builds[j]}"); done; fi
        for bin in "${order[@]}"; do measure "$bin"; done
    done
} | tee "$results/idle-server.txt"
echo "mean per build:" | tee -a "$results/idle-server.txt"
awk 'NR > 1 && $1 != "mean" { cpu[$1] += $2; calls[$1] += $3; n[$1]++ }
     END { for (b in n) printf "  %-38s %8.2f CPU-s %10.0f syscalls\n", b, cpu[b] / n[b], calls[b] / n[b] }' \
    "$results/idle-server.txt" | tee -a "$results/idle-server.txt"
