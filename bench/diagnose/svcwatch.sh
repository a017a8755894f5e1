#!/bin/bash
# Usage: bench/diagnose/svcwatch.sh OUT, started just before a bench/ run.
# Waits for the run's `loadtest run`, lets it settle 5 s, then writes to
# OUT the CPU seconds PostgreSQL's processes and Redis used over the next
# 10 s: what the load tool's "server CPU" (gateways and workers only)
# leaves out. Backends that exit within the 10 s are not counted.
out=$1
snap() { for p in $(pgrep -x postgres) $(pgrep -x redis-server); do
  [ -r /proc/$p/stat ] && awk -v c="$(cat /proc/$p/comm)" '{print c, $14+$15}' /proc/$p/stat; done | awk '{s[$1]+=$2} END {for (k in s) print k, s[k]}'; }
while ! pgrep -f 'loadtest run' >/dev/null; do sleep 0.2; done
sleep 5; snap > /tmp/svc0; sleep 10; snap > /tmp/svc1
join /tmp/svc0 /tmp/svc1 | awk '{printf "%s %.2f CPU-s in 10 s\n", $1, ($3-$2)/100}' > "$out"
echo "svcwatch: $(tr '\n' ' ' < "$out")"
