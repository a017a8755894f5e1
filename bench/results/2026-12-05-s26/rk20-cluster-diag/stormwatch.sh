#!/bin/bash
# waits for "presence settled" in LOG, then 10 s (the storm), resets pg_stat_statements, dumps after 12 s
log=$1; out=$2
source bench/diagnose/lib.sh
for i in $(seq 1 1200); do grep -q 'presence settled' "$log" 2>/dev/null && break; sleep 0.5; done
read -r _ port < <(diagnose_private_postgres)
sql() { psql -h 127.0.0.1 -p "$port" -U postgres -At -c "$1"; }
sql "create extension if not exists pg_stat_statements;" >/dev/null
sleep 9.5
sql "select pg_stat_statements_reset();" > /dev/null
sleep 12
psql -h 127.0.0.1 -p "$port" -U postgres -c "select calls, round(total_exec_time::numeric,1) ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 120) q from pg_stat_statements order by total_exec_time desc limit 20" > "$out"
