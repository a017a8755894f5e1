#!/usr/bin/env bash
# usage: run.sh CONNECTIONS RATE WINDOW OUTDIR
# The driver of this session's cache simulation, kept as it ran (from
# /tmp, against /work/main's release build); see ../README.md.
set -uo pipefail
cd /work/main
source scripts/lib/free_port.sh
conns=$1; rate=$2; window=$3; out=$4
mkdir -p "$out"
data=$(mktemp -d); port=$(free_port)
HEARTBEAT_TIMEOUT_MS=600000 DRAIN_SECONDS=1 valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no \
  --D1=49152,12,64 --LL=2097152,16,64 --callgrind-out-file="$out/cg.%p" \
  target/release/gateway --listen 127.0.0.1:$port --data-dir "$data" > "$out/gateway.log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; kill $lt 2>/dev/null' EXIT
for i in $(seq 1 600); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.2; done
echo "ready after $i polls"
target/release/loadtest run fanout --connections $conns --group-size 10 --rate $rate --connect-rate 1000 \
  --duration $((window + 30)) --ping-ms 300000 --heartbeat-timeout-ms 600000 \
  --ws-url ws://127.0.0.1:$port/ws --http-url http://127.0.0.1:$port --data-dir "$data" \
  --report "$out/report.json" > "$out/loadtest.log" 2>&1 &
lt=$!
established() { ss -Htn state established "( sport = :$port )" | wc -l; }
while [ "$(established)" -lt "$conns" ]; do sleep 5; echo "$(date +%T) established=$(established)"; done
sleep 15
callgrind_control -i on $gw >/dev/null
t0=$(date +%s.%N)
sleep $window
t1=$(date +%s.%N)
callgrind_control -d $gw >/dev/null
callgrind_control -i off $gw >/dev/null
echo "window $(echo "$t1 - $t0" | bc) s at $rate msg/s in groups of 10" | tee "$out/window.txt"
echo waiting for loadtest
wait $lt 2>/dev/null || true
kill $gw; wait $gw 2>/dev/null || true
rm -rf "$data"
ls -la "$out"
