#!/bin/bash
# Usage: bench/diagnose/pgprocwatch.sh OUT, started just before a
# bench/cluster.sh run. Waits for the run's `loadtest run`, lets it settle
# 5 s, then writes to OUT the CPU seconds the private PostgreSQL's
# processes used over the next 10 s by kind: the postmaster, the backends
# that answer the gateways and workers together, and each background
# process (log writer, checkpointer, autovacuum, ...) on its own.
# Backends that exit within the 10 s are not counted.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
diagnose_settled_run
read -r postmaster _ < <(diagnose_private_postgres)
# Without a process per child (there are dozens of backends), so that a
# snapshot is one instant.
snap() {
    local p title stat kind
    for p in "$postmaster" $(pgrep -P "$postmaster"); do
        title=""
        IFS= read -r -d '' title < "/proc/$p/cmdline" 2>/dev/null || [ -n "$title" ] || continue
        read -r -a stat < "/proc/$p/stat" 2>/dev/null || continue
        # "postgres: walwriter", or "postgres: postgres postgres 127.0.0.1(5432) idle" for a backend.
        case $title in
            "postgres: "*"("*")"*) kind=backends ;;
            "postgres: "*) kind=${title#postgres: }; while [[ $kind == *" " ]]; do kind=${kind% }; done ;;
            *) kind=postmaster ;;
        esac
        echo "$kind|$((stat[13] + stat[14]))"
    done
}
diagnose_cpu_delta "$out" snap
echo "pgprocwatch: $(tr '\n' ';' < "$out")"
