#!/bin/bash
# Usage: stormwatch.sh OUTDIR DELAY SECONDS: once a new `loadtest agent` starts,
# waits DELAY s (into the reconnect storm), then for SECONDS s records perf of the
# machine and the private PostgreSQL's pg_stat_statements.
set -euo pipefail
source /work/main/bench/diagnose/lib.sh
out=$1; delay=$2; secs=$3
mkdir -p "$out"
before=" $(pgrep -f 'loadtest agent' | tr '\n' ' ' || true) "
while :; do
  for pid in $(pgrep -f 'loadtest agent' || true); do [[ $before == *" $pid "* ]] || break 2; done
  sleep 0.2
done
echo "agents started $(date -u +%T.%N)" > "$out/times.txt"
sleep "$delay"
read -r _ port < <(diagnose_private_postgres)
sql() { psql -h 127.0.0.1 -p "$port" -U postgres -At -c "$1"; }
sql "create extension if not exists pg_stat_statements; select pg_stat_statements_reset();" > /dev/null
echo "watch from $(date -u +%T.%N)" >> "$out/times.txt"
perf record -a -g -F 499 -o "$out/perf.data" -- sleep "$secs" > "$out/perf.txt" 2>&1
psql -h 127.0.0.1 -p "$port" -U postgres -c "select calls, round(total_exec_time::numeric,1) ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 140) q from pg_stat_statements order by total_exec_time desc limit 25" > "$out/pg.txt"
echo "watch to $(date -u +%T.%N)" >> "$out/times.txt"
