#!/bin/bash
source /work/main/bench/diagnose/lib.sh
diagnose_settled_run
read -r pm _ < <(diagnose_private_postgres)
snap() { for p in $(pgrep -P $pm); do t=$(tr '\0' ' ' < /proc/$p/cmdline | sed 's/postgres: //; s/postgres postgres 127.0.0.1([0-9]*).*/backend/'); awk -v c="$t" '{print c"|"$14+$15}' /proc/$p/stat 2>/dev/null; done | awk -F'|' '{s[$1]+=$2} END {for (k in s) print k"|"s[k]}' | sort; }
snap > /tmp/pg0; sleep 10; snap > /tmp/pg1
join -t'|' /tmp/pg0 /tmp/pg1 | awk -F'|' '{printf "%-40s %.2f CPU-s in 10 s\n", $1, ($3-$2)/100}'
