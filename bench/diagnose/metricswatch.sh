#!/bin/bash
# Usage: bench/diagnose/metricswatch.sh OUT, started just before a bench/
# run. Waits for the run's `loadtest run`, lets it settle 5 s, then scrapes
# the /metrics of every gateway and worker listening on 127.0.0.1, twice,
# 10 s apart, and writes to OUT each histogram's count, mean and
# bucket-interpolated p50/p99 over those 10 s: where a command's time goes
# inside the servers (`chat_command_duration_seconds` on the gateways;
# `chat_worker_queue_wait_seconds` and `chat_worker_stage_seconds` on the
# workers).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
tmp=$(mktemp -d)
diagnose_settled_run
# "NAME PORT" of every gateway and worker listener.
endpoints=$(ss -ltnpH | awk 'match($0, /users:\(\("(gateway|worker)"/) {
    name = substr($0, RSTART + 9, RLENGTH - 9); sub(/"/, "", name)
    n = split($4, a, ":"); print name, a[n] }' | sort -u)
[ -n "$endpoints" ] || { echo "metricswatch: no gateway or worker listening" >&2; exit 1; }
scrape() {
    while read -r name port; do
        curl -sf "http://127.0.0.1:$port/metrics" | sed -n "s/^\(chat_[a-z_]*_seconds_\(bucket\|sum\|count\)\)/$name \1/p" || true
    done <<< "$endpoints"
}
scrape > "$tmp/0"; sleep 10; scrape > "$tmp/1"
# Sums over the processes of one kind, then differences over the 10 s.
python3 - "$tmp/0" "$tmp/1" > "$out" <<'PY'
import re, sys
from collections import defaultdict
def load(path):
    totals = defaultdict(float)
    for line in open(path):
        name, rest = line.split(' ', 1)
        series, value = rest.rsplit(' ', 1)
        totals[(name, series)] += float(value)
    return totals
before, after = load(sys.argv[1]), load(sys.argv[2])
hist = defaultdict(lambda: {'buckets': [], 'sum': 0.0, 'count': 0.0})
for (name, series), value in after.items():
    delta = value - before.get((name, series), 0.0)
    m = re.match(r'(\w+)_(bucket|sum|count)(?:\{(.*)\})?$', series)
    metric, part, labels = m.group(1), m.group(2), m.group(3) or ''
    le = re.search(r'le="([^"]*)"', labels)
    labels = re.sub(r',?le="[^"]*"', '', labels)
    h = hist[(name, metric, labels)]
    if part == 'bucket':
        h['buckets'].append((float('inf') if le.group(1) == '+Inf' else float(le.group(1)), delta))
    else:
        h[part] = delta
def quantile(buckets, q):
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return float('nan')
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= q * total:
            if bound == float('inf'):
                return lower
            return lower + (bound - lower) * (q * total - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower
print(f"{'process':8} {'histogram':52} {'count':>8} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
for (name, metric, labels), h in sorted(hist.items()):
    if h['count'] == 0:
        continue
    label = metric + (f'{{{labels}}}' if labels else '')
    print(f"{name:8} {label:52} {h['count']:8.0f} {1000 * h['sum'] / h['count']:8.2f} "
          f"{1000 * quantile(h['buckets'], 0.5):8.2f} {1000 * quantile(h['buckets'], 0.99):8.2f}")
PY
rm -rf "$tmp"
cat "$out"
