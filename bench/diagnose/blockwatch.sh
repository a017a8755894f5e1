#!/bin/bash
# Usage: bench/diagnose/blockwatch.sh OUT [PROCESS], started just before a
# bench/ run (PROCESS: gateway, the default, or worker). Waits for the
# run's `loadtest run`, lets it settle 5 s, then records with `perf trace`
# for 8 s every system call of the newest PROCESS that took 2 ms or more,
# and writes to OUT, per thread and call, how many there were, their total
# and their longest. Waiting for work (futex, epoll_wait) is left out: what
# remains is where a thread stalled, such as the disk under SQLite's writer.
# A call's time includes waiting for a core after it was woken, so read it
# beside bench/diagnose/threadwatch.sh. Needs perf (linux-perf).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
name=${2:-gateway}
tmp=$(mktemp -d)
diagnose_settled_run
pid=$(pgrep -n -x "$name") || { echo "blockwatch: no $name running" >&2; exit 1; }
timeout 8 perf trace -p "$pid" --duration 2 -o "$tmp/trace" > /dev/null 2>&1 || true
# Lines look like "  12.345 ( 3.210 ms): thread/123 fsync(fd: 12) = 0".
grep -v -E ' (futex|epoll_wait|epoll_pwait)\(' "$tmp/trace" |
    sed -nE 's/^ *[0-9.]+ \( *([0-9.]+) ms\): ([^ ]+) ([a-z0-9_]+)\(.*/\2 \3 \1/p' |
    awk '{ k = $1 " " $2; n[k]++; sum[k] += $3; if ($3 > max[k]) max[k] = $3 }
         END { for (k in n) printf "%-28s %5d calls %9.1f ms in all, longest %6.1f ms\n", k, n[k], sum[k], max[k] }' |
    sort > "$out"
echo "blockwatch: $name $pid, system calls of 2 ms or more over 8 s:" | cat - "$out"
rm -rf "$tmp"
