#!/bin/bash
# Usage: bench/diagnose/pgprocwatch.sh OUT, started just before a
# bench/cluster.sh run. Waits for the run's `loadtest run`, lets it settle
# 5 s, then writes to OUT the CPU seconds the private PostgreSQL's
# processes used over the next 10 s by kind: the postmaster, the backends
# that answer the gateways and workers together, and each background
# process (log writer, checkpointer, autovacuum, ...) on its own. Backends that exit within the
# 10 s are not counted.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
tmp=$(mktemp -d)
diagnose_settled_run
read -r postmaster _ < <(diagnose_private_postgres)
snap() {
    awk '{print "postmaster|" $14+$15}' "/proc/$postmaster/stat"
    for p in $(pgrep -P "$postmaster"); do
        # "postgres: walwriter", or "postgres: postgres postgres 127.0.0.1(5432) idle" for a backend.
        kind=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | sed -E 's/^postgres: //; s/^[^ ]+ [^ ]+ [0-9.]+\([0-9]+\).*/backends/; s/ +$//') || continue
        awk -v k="$kind" '{print k "|" $14+$15}' "/proc/$p/stat" 2>/dev/null || true
    done | awk -F'|' '{s[$1]+=$2} END {for (k in s) print k "|" s[k]}' | sort
}
snap > "$tmp/0"; sleep 10; snap > "$tmp/1"
join -t'|' "$tmp/0" "$tmp/1" | awk -F'|' '{printf "%s: %.2f CPU-s in 10 s\n", $1, ($3-$2)/100}' > "$out"
rm -rf "$tmp"
echo "pgprocwatch: $(tr '\n' ';' < "$out")"
