#!/bin/bash
# Usage: bench/diagnose/perfwatch.sh OUT.data, started just before a bench/
# run: `perf record -a -g` of the whole machine for 10 s, from 6 s after
# the run's `loadtest run` began. Read it by process with
#   perf script -i OUT.data -F pid,comm | sort | uniq -c | sort -rn
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
diagnose_wait_for_run
sleep 6
perf record -a -g -F 499 -o "$out" -- sleep 10 2>&1 | tail -1
echo "perfwatch: $out"
