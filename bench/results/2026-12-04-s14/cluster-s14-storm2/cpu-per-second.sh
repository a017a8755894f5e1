#!/bin/bash
# per second: machine idle %, and CPU of gateway, worker, postgres, redis, loadtest
source /work/main/bench/diagnose/lib.sh
diagnose_wait_for_run
snap() { for d in /proc/[0-9]*; do read -r -a s < $d/stat 2>/dev/null || continue; echo "${s[1]} $((s[13]+s[14]))"; done | awk '{n=$1; gsub(/[()]/,"",n); if (n ~ /^postgres/) n="postgres"; a[n]+=$2} END {printf "gw=%d wk=%d pg=%d rd=%d lt=%d\n", a["gateway"], a["worker"], a["postgres"], a["redis-server"], a["loadtest"]}'; }
prev=$(snap); read -r -a c0 < <(head -1 /proc/stat)
t=0
while pgrep -f 'loadtest run' > /dev/null; do
  sleep 1; t=$((t+1))
  cur=$(snap); read -r -a c1 < <(head -1 /proc/stat)
  idle=$(( (c1[4]+c1[5]) - (c0[4]+c0[5]) )); tot=0; for i in 1 2 3 4 5 6 7 8; do tot=$((tot + c1[i] - c0[i])); done
  echo "$t idle=$((100*idle/tot))% $(paste -d' ' <(echo $prev | tr ' ' '\n') <(echo $cur | tr ' ' '\n') | awk -F'[= ]' '{printf "%s=%d ", $1, $4-$2}')"
  prev=$cur; c0=("${c1[@]}")
done
