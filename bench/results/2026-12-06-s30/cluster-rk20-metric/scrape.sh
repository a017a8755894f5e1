#!/usr/bin/env bash
# usage: scrape2.sh DIR : waits for the gateways started from /tmp/build-metric, then saves the presence delay lines of each one's /metrics every second until they exit
dir=$1; mkdir -p "$dir"
until [ "$(pgrep -f '^/tmp/build-metric/gateway' | wc -l)" -ge 2 ]; do sleep 0.2; done
sleep 1
pids=$(pgrep -f '^/tmp/build-metric/gateway')
while pgrep -f '^/tmp/build-metric/gateway' > /dev/null; do
  t=$(date -u +%H%M%S)
  for pid in $pids; do
    port=$(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -o "127.0.0.1:[0-9]*" | head -1)
    [ -n "$port" ] || continue
    curl -s -m 2 "http://$port/metrics" | grep -E "^chat_presence_delay_seconds|^chat_open_connections" > "$dir/$t-$pid.txt"
    [ -s "$dir/$t-$pid.txt" ] || rm -f "$dir/$t-$pid.txt"
  done
  sleep 1
done
echo "gateways gone"
