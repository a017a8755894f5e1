#!/bin/bash
# Usage: bench/diagnose/perfwatch.sh OUT.data, started just before a bench/
# run: `perf record -a -g` of the whole machine for 10 s, from 6 s after
# the run's `loadtest run` began. Read it by process with
#   perf script -i OUT.data -F pid,comm | sort | uniq -c | sort -rn
out=$1
while ! pgrep -f 'loadtest run' >/dev/null; do sleep 0.2; done
sleep 6
perf record -a -g -F 499 -o "$out" -- sleep 10 2>&1 | tail -1
echo "perfwatch: $out"
