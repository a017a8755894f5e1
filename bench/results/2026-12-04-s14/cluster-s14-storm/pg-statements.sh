#!/bin/bash
set -uo pipefail
source /work/main/bench/diagnose/lib.sh
out=$1
diagnose_wait_for_run
read -r _ port < <(diagnose_private_postgres)
sql() { psql -h 127.0.0.1 -p "$port" -U postgres -At -c "$1"; }
sql "create extension if not exists pg_stat_statements; select pg_stat_statements_reset();" > /dev/null
while pgrep -f 'loadtest run' > /dev/null; do
  psql -h 127.0.0.1 -p "$port" -U postgres -c "select calls, round(total_exec_time::numeric,1) exec_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 160) q from pg_stat_statements order by total_exec_time desc limit 20" > "$out.tmp" 2>/dev/null && mv "$out.tmp" "$out"
  sleep 2
done
