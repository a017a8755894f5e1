#!/bin/bash
# every second: the gateways' setup timing counters (ad-hoc build) and open connections
out=$1
for i in $(seq 1 400); do
  urls=$(ps -eo args | grep "[l]oadtest run" | head -1 | grep -o 'ws://[0-9.:]*' | sort -u)
  [ -n "$urls" ] && break; sleep 1
done
while pgrep -f "loadtest run" >/dev/null; do
  for u in $urls; do
    h=${u#ws://}
    echo "$(date +%T) $h $(curl -s http://$h/metrics | grep -E '^debug_|^chat_open_connections' | tr '\n' ' ')"
  done >> "$out"
  sleep 1
done
