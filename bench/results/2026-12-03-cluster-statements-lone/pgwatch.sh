#!/bin/bash
while ! pgrep -f 'loadtest run' >/dev/null; do sleep 0.2; done
port=$(ps -eo args | grep -o 'postgres -D [^ ]* -p [0-9]*' | grep -o '[0-9]*$' | head -1)
sleep 5
psql -h 127.0.0.1 -p $port -U postgres -At -c "create extension if not exists pg_stat_statements; select pg_stat_statements_reset();" > /dev/null
psql -h 127.0.0.1 -p $port -U postgres -At -c "select sum(xact_commit) from pg_stat_database" > /tmp/pg-x0
sleep 10
psql -h 127.0.0.1 -p $port -U postgres -At -c "select sum(xact_commit) from pg_stat_database" > /tmp/pg-x1
psql -h 127.0.0.1 -p $port -U postgres -c "select calls, round(total_exec_time::numeric,1) ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) q from pg_stat_statements order by calls desc limit 25" > /tmp/pg-stmts.txt
