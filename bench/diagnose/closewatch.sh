#!/bin/bash
# Usage: bench/diagnose/closewatch.sh OUT, started just before a bench/ run.
# Waits for the run's `loadtest run`, then scrapes every gateway's
# `chat_connections_closed_total` once a second while the run lasts, and
# writes to OUT the last scrape of each gateway (by port): why the servers
# closed connections during the run (`heartbeat`, `slow`, `protocol_error`
# ...), which the load tool only counts as disconnects. A gateway that
# closed nothing shows no line. Written for the thirty-fourth session's
# heartbeat closes at saturation (docs/benchmarks-journal.md).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
tmp=$(mktemp -d)
diagnose_wait_for_run
while pgrep -f 'loadtest run' >/dev/null; do
    for port in $(ss -ltnpH | awk '/"gateway"/ { n = split($4, a, ":"); print a[n] }' | sort -u); do
        curl -sf "http://127.0.0.1:$port/metrics" | grep '^chat_connections_closed_total' > "$tmp/$port.new" || true
        # An exited gateway answers nothing: keep its last scrape.
        [ -s "$tmp/$port.new" ] || [ ! -e "$tmp/$port" ] && mv "$tmp/$port.new" "$tmp/$port"
        rm -f "$tmp/$port.new"
    done
    sleep 1
done
: > "$out"
for f in "$tmp"/*; do
    [ -e "$f" ] || continue
    sed "s/^/gateway :$(basename "$f") /" "$f" >> "$out"
done
rm -rf "$tmp"
