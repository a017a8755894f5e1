#!/bin/bash
# Usage: bench/diagnose/pgwatch.sh OUT, started just before
#   SERVICES_PG_EXTRA="-c shared_preload_libraries=pg_stat_statements" bench/cluster.sh ...
# Waits for the run's `loadtest run`, lets it settle 5 s, resets
# pg_stat_statements and writes to OUT the commits and the 25 most called
# statements of the next 10 s.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
diagnose_wait_for_run
read -r _ port < <(diagnose_private_postgres)
sql() { psql -h 127.0.0.1 -p "$port" -U postgres -At -c "$1"; }
sleep 5
sql "create extension if not exists pg_stat_statements; select pg_stat_statements_reset();" > /dev/null
before=$(sql "select sum(xact_commit) from pg_stat_database")
sleep 10
after=$(sql "select sum(xact_commit) from pg_stat_database")
{
    echo "# pg_stat_statements over 10 s of the measured phase; commits $before -> $after"
    psql -h 127.0.0.1 -p "$port" -U postgres -c "select calls, round(total_exec_time::numeric,1) ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) q from pg_stat_statements order by calls desc limit 25"
} > "$out"
echo "pgwatch: $((after - before)) commits in 10 s; statements in $out"
