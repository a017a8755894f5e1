#!/bin/bash
# Usage: bench/diagnose/svcwatch.sh OUT, started just before a bench/ run.
# Waits for the run's `loadtest run`, lets it settle 5 s, then writes to
# OUT the CPU seconds PostgreSQL's processes and Redis used over the next
# 10 s: what the load tool's "server CPU" (gateways and workers only)
# leaves out: the private PostgreSQL's postmaster and backends, and the
# newest redis-server (the machine's own are older). Backends that exit
# within the 10 s are not counted.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
diagnose_settled_run
read -r postmaster _ < <(diagnose_private_postgres)
redis=$(pgrep -n -x redis-server) || { echo "svcwatch: no redis-server running" >&2; exit 1; }
snap() {
    for p in "$postmaster" $(pgrep -P "$postmaster") "$redis"; do
        if [ -r "/proc/$p/stat" ]; then
            awk -v c="$(cat "/proc/$p/comm")" '{print c "|" $14+$15}' "/proc/$p/stat" 2>/dev/null || true
        fi
    done
}
diagnose_cpu_delta "$out" snap
echo "svcwatch: $(tr '\n' ' ' < "$out")"
