#!/bin/bash
# Usage: bench/diagnose/syscallwatch.sh OUT [PROCESS], started just before a
# bench/ run (PROCESS: gateway, the default, or worker). Waits for the
# run's `loadtest run`, lets it settle 5 s, then counts for 10 s the newest
# PROCESS's system calls of the kinds that a delivery, a commit or a
# wake-up makes (`perf stat` on their tracepoints), and writes the counts
# to OUT: divided by the messages of those 10 s they give calls per
# message. Needs perf (linux-perf) and root for the tracepoints.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
name=${2:-gateway}
diagnose_settled_run
pid=$(pgrep -n -x "$name") || { echo "syscallwatch: no $name running" >&2; exit 1; }
calls=(sendto write writev pwrite64 pread64 fsync fdatasync fcntl futex epoll_wait recvfrom read)
events=$(printf 'syscalls:sys_enter_%s,' "${calls[@]}")
perf stat -e "${events%,}" -p "$pid" -- sleep 10 2>&1 | grep syscalls: | awk '{print $2, $1}' | sed 's/syscalls:sys_enter_//' > "$out"
echo "syscallwatch: $(tr '\n' ' ' < "$out")"
