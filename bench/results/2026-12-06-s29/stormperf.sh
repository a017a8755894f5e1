#!/bin/bash
# stormperf.sh OUTDIR DELAY SECONDS: perf record -a -g once a new loadtest agent starts
set -euo pipefail
out=$1; delay=$2; secs=$3
mkdir -p "$out"
before=" $(pgrep -f 'loadtest agent' | tr '\n' ' ' || true) "
while :; do
  for pid in $(pgrep -f 'loadtest agent' || true); do [[ $before == *" $pid "* ]] || break 2; done
  sleep 0.2
done
echo "agents started $(date -u +%T.%N)" > "$out/times.txt"
sleep "$delay"
echo "watch from $(date -u +%T.%N)" >> "$out/times.txt"
perf record -a -g -F 499 -o "$out/perf.data" -- sleep "$secs" > "$out/perf.txt" 2>&1
echo "watch to $(date -u +%T.%N)" >> "$out/times.txt"
