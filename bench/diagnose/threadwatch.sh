#!/bin/bash
# Usage: bench/diagnose/threadwatch.sh OUT, started just before a bench/
# run. Waits for the run's `loadtest run`, lets it settle 5 s, then writes
# to OUT, for the newest gateway, worker and load agent, each thread's CPU
# and the time it spent runnable but waiting for a core (the kernel's
# schedstat), and each process's disk writes, all per second over 10 s.
# A thread that every command waits for and that waits for a core much of
# the time says the machine, not the code, sets the latency; the rest of
# a thread's time it slept: idle, or blocked on a lock or the disk
# (bench/diagnose/blockwatch.sh lists the calls that stalled).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
tmp=$(mktemp -d)
diagnose_settled_run
pids=$( (pgrep -n -x gateway; pgrep -n -x worker; pgrep -n -f 'loadtest agent') || true)
[ -n "$pids" ] || { echo "threadwatch: no gateway, worker or agent running" >&2; exit 1; }
# "PID TID COMM RUN-NS WAIT-NS" per thread, and "PID io WRITE-BYTES" per process.
snap() {
    for p in $pids; do
        for t in /proc/"$p"/task/*; do
            read -r run wait _ < "$t/schedstat" 2>/dev/null || continue
            echo "$p ${t##*/} $(tr ' ' '_' < "$t/comm") $run $wait"
        done
        echo "$p io - $(awk '/^write_bytes/ {print $2}' "/proc/$p/io") 0"
    done
}
snap > "$tmp/0"; sleep 10; snap > "$tmp/1"
{
    printf '%-8s %-8s %-18s %10s %14s\n' process thread name 'cpu/s' 'runq-wait/s'
    join <(awk '{print $1"/"$2, $3, $4, $5}' "$tmp/0" | sort) <(awk '{print $1"/"$2, $4, $5}' "$tmp/1" | sort) |
        awk '$2 != "-" { cpu = ($5 - $3) / 1e10; wait = ($6 - $4) / 1e10
                 if (cpu + wait >= 0.01) { split($1, id, "/"); printf "%-8s %-8s %-18s %10.2f %14.2f\n", id[1], id[2], $2, cpu, wait } }
             $2 == "-" { split($1, id, "/"); io[id[1]] = ($5 - $3) / 10 }
             END { for (p in io) printf "process %s wrote %.1f MB/s to disk\n", p, io[p] / 1e6 }'
} > "$out"
rm -rf "$tmp"
cat "$out"
