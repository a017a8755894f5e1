#!/bin/bash
# Usage: bench/diagnose/readcost.sh [ENTRY_BYTES]
# What Redis spends on a worker's read of a shard, by INFO commandstats,
# on a private redis-server: a plain XREADGROUP of 1 and of 20 entries
# (ENTRY_BYTES each, 300 by default), and the same read inside a script
# that first checks a lease, as the worker's first lease fence did
# (docs/benchmarks-journal.md, thirty-second session). Each command runs
# 30,000 times from one client (redis-benchmark); the reads are of the
# backlog ("0"), so every call reads the same pending entries. Prints
# Redis's microseconds per call of each.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/services.sh
services_install
trap services_stop EXIT
bytes=${1:-300}
services_start_redis
port=${SERVICES_REDIS_URL##*:}
r() { redis-cli -p "$port" "$@"; }
r XGROUP CREATE s workers 0 MKSTREAM > /dev/null
r SET lease me > /dev/null
payload=$(head -c "$bytes" /dev/zero | tr '\0' x)
for _ in $(seq 1 20); do r XADD s '*' c "$payload" > /dev/null; done
r XREADGROUP GROUP workers shard COUNT 20 STREAMS s '>' > /dev/null
checked_read=$(r SCRIPT LOAD "
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST')
end
return redis.call('XREADGROUP', 'GROUP', 'workers', 'shard', 'COUNT', ARGV[2], 'STREAMS', KEYS[2], '0')")
per_call() {
    local name=$1 stat=$2; shift 2
    r CONFIG RESETSTAT > /dev/null
    redis-benchmark -p "$port" -c 1 -n 30000 --csv "$@" > /dev/null
    printf '%-44s %s µs\n' "$name" "$(r INFO commandstats | grep "^cmdstat_$stat:" | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')"
}
echo "readcost: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), entries of $bytes bytes, Redis µs per call"
for count in 1 20; do
    per_call "XREADGROUP, $count entries" xreadgroup XREADGROUP GROUP workers shard COUNT "$count" STREAMS s 0
    per_call "script: lease check + XREADGROUP, $count entries" evalsha EVALSHA "$checked_read" 2 lease s me "$count"
done
