#!/bin/bash
# CPU seconds of postgres and redis-server over 10 s of the measured phase
out=$1
snap() { for p in $(pgrep -x postgres) $(pgrep -x redis-server); do
  [ -r /proc/$p/stat ] && awk -v c="$(cat /proc/$p/comm)" '{print c, $14+$15}' /proc/$p/stat; done | awk '{s[$1]+=$2} END {for (k in s) print k, s[k]}'; }
while ! pgrep -f 'loadtest run' >/dev/null; do sleep 0.2; done
sleep 5; snap > /tmp/svc0; sleep 10; snap > /tmp/svc1
join /tmp/svc0 /tmp/svc1 | awk '{printf "%s %.2f CPU-s in 10 s\n", $1, ($3-$2)/100}' > $out
