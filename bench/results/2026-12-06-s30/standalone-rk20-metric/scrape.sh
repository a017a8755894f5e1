#!/usr/bin/env bash
# usage: scrape.sh DIR : waits for a gateway started from /tmp/build-metric, then saves the presence delay lines of its /metrics every second until it exits
dir=$1; mkdir -p "$dir"
until pid=$(pgrep -f "^/tmp/build-metric/gateway" | head -1) && [ -n "$pid" ]; do sleep 0.2; done
port=$(tr '\0' ' ' < /proc/$pid/cmdline | grep -o "127.0.0.1:[0-9]*" | head -1)
while kill -0 "$pid" 2>/dev/null; do
  t=$(date -u +%H%M%S)
  curl -s -m 2 "http://$port/metrics" | grep -E "^chat_presence_delay_seconds|^chat_open_connections" > "$dir/$t.txt"
  [ -s "$dir/$t.txt" ] || rm -f "$dir/$t.txt"
  sleep 1
done
echo "gateway $pid on $port gone"
