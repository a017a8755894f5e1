#!/usr/bin/env bash
# A gateway starting against a full presence log: 100,000 announcements of
# users in 20 chats each, all younger than the 50 s a gateway reads back
# (shared/src/bus/presence_log.rs). Measures the log's size in Redis and
# the time from the gateway's subscription to its catch-up's end. Usage:
#   bench/presence-catch-up.sh
# Results: bench/results/<date>-presence-catch-up/ (SERVER_BIN, LABEL: see
# bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
source bench/common.sh presence-catch-up

# measure runs in a pipeline's subshell: the gateway's pid goes through a file.
stop_all() {
    if [ -f "$results/gateway.pid" ]; then kill "$(cat "$results/gateway.pid")" 2>/dev/null || true; rm -f "$results/gateway.pid"; fi
    services_stop
}
trap stop_all EXIT
bench_services

measure() {
    echo "progress: appending 100,000 announcements" >&2
    python3 - "$REDIS_URL" <<'PY'
import json, subprocess, sys
out = []
for i in range(100_000):
    payload = json.dumps({"ev": "presence", "user": f"user{i:06d}", "online": i % 2 == 0, "last_seen": 1796570054313,
                          "chats": list(range(100_000, 100_020)), "seq": 1796570054313123 + i}, separators=(",", ":"))
    args = ["XADD", "chat:presencelog", "MAXLEN", "~", "100000", "*", "e", payload]
    out.append("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args))
subprocess.run(["redis-cli", "-u", sys.argv[1], "--pipe"], input="".join(out).encode(), check=True, capture_output=True)
PY
    echo "log: $(redis-cli -u "$REDIS_URL" XLEN chat:presencelog) entries, $(redis-cli -u "$REDIS_URL" MEMORY USAGE chat:presencelog SAMPLES 0) bytes"
    echo "progress: starting the gateway" >&2
    NODE_ID=gw-1 RUST_LOG=info NO_COLOR=1 "$server_bin"/gateway --listen 127.0.0.1:0 > "$results/gateway.log" 2>&1 &
    echo $! > "$results/gateway.pid"
    until grep -q "read again" "$results/gateway.log"; do sleep 0.05; done
    python3 - "$results/gateway.log" <<'PY'
import re, sys, datetime
lines = open(sys.argv[1]).read().splitlines()
def at(text):
    line = next(l for l in lines if text in l)
    stamp = re.search(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line).group(0)
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")), line
subscribed, _ = at("listening for events")
done, line = at("read again")
read = re.search(r"read=(\d+)", line).group(1)
print(f"catch-up: {read} announcements read and applied in {(done - subscribed).total_seconds() * 1000:.0f} ms after the subscription")
PY
}
echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${LABEL:+LABEL=$LABEL }bench/presence-catch-up.sh" > "$results/presence-catch-up.cmd"
measure | tee "$results/presence-catch-up.txt"
