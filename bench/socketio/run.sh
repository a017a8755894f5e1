#!/usr/bin/env bash
# Socket.IO 4 + Redis adapter counterpart of bench/standalone.sh's idle and
# fanout runs (see README.md). Usage:
#   bench/socketio/run.sh [idle] [fanout]        (default: both)
# Each scenario gets a fresh server. Settings from the environment (defaults
# are those of bench/standalone.sh):
#   IDLE_CONNECTIONS=19000 IDLE_CONNECT_RATE=3000
#   FANOUT_CONNECTIONS=2000 FANOUT_CONNECT_RATE=2000 GROUP_SIZE=10 RATE=2000
#   DURATION=20 (seconds of each measured phase)
#   SERVERS=1 (server.js processes behind the Redis adapter; connections are
#     spread over them round-robin and their CPU and RSS are summed)
#   REDIS_URL (default: a private redis-server on a free port, stopped at the end)
#   REDIS_PREFIX (default: sio-bench-<pid>-<scenario>)
#   PING_INTERVAL_MS=25000 PING_TIMEOUT_MS=20000 (Socket.IO's defaults)
#   LOCAL_ADDRESS (source address(es) of the client connections, e.g. 127.0.0.2)
#   LOAD_HEAP_MB=4096 (the load client's V8 heap limit; it holds every connection)
#   RESULTS (default: bench/socketio/results/<date>-socketio)
set -euo pipefail
cd "$(dirname "$0")"

IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-19000}
IDLE_CONNECT_RATE=${IDLE_CONNECT_RATE:-3000}
FANOUT_CONNECTIONS=${FANOUT_CONNECTIONS:-2000}
FANOUT_CONNECT_RATE=${FANOUT_CONNECT_RATE:-2000}
GROUP_SIZE=${GROUP_SIZE:-10}
RATE=${RATE:-2000}
DURATION=${DURATION:-20}
SERVERS=${SERVERS:-1}
LOCAL_ADDRESS=${LOCAL_ADDRESS:-}
LOAD_HEAP_MB=${LOAD_HEAP_MB:-4096}
export PING_INTERVAL_MS=${PING_INTERVAL_MS:-25000} PING_TIMEOUT_MS=${PING_TIMEOUT_MS:-20000}
results=${RESULTS:-results/$(date -u +%Y-%m-%d)-socketio}

tmp=$(mktemp -d)
server_pids=()
load_pid=""
tail_pid=""
redis_pid=""

stop_servers() {
    local pid
    for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    server_pids=()
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; fi
    if [ -n "$tail_pid" ]; then kill "$tail_pid" 2>/dev/null || true; wait "$tail_pid" 2>/dev/null || true; fi
    stop_servers
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        # A daemonized redis-server is not our child: poll until it is gone.
        for _ in $(seq 1 50); do
            kill -0 "$redis_pid" 2>/dev/null || break
            [ "$(awk '{print $3}' "/proc/$redis_pid/stat" 2>/dev/null)" = Z ] && break  # exited, not yet reaped
            sleep 0.1
        done
    fi
    rm -rf "$tmp"
    echo "bench: stopped every process it started${redis_pid:+ (redis-server $redis_pid too)}" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

source ../../scripts/lib/free_port.sh

[ -d node_modules ] || npm ci --no-audit --no-fund
mkdir -p "$results"

version() { node -p "require('./node_modules/$1/package.json').version"; }
echo "bench: node $(node --version), socket.io $(version socket.io), socket.io-client $(version socket.io-client)," \
    "@socket.io/redis-adapter $(version @socket.io/redis-adapter), redis (node client) $(version redis)," \
    "engine.io $(version engine.io), ws $(version ws)"
echo "bench: $(nproc) cores, open-file limit $(ulimit -Sn) (hard $(ulimit -Hn))"
for n in "$IDLE_CONNECTIONS" "$FANOUT_CONNECTIONS"; do
    # The client holds every connection in one process, and so do the servers
    # between them; node raises its soft limit to the hard one by itself.
    if [ "$(ulimit -Hn)" != unlimited ] && [ $(( n + 64 )) -gt "$(ulimit -Hn)" ]; then
        echo "bench: $n connections do not fit one process's open-file limit of $(ulimit -Hn)" >&2
        exit 2
    fi
done

if [ -n "${REDIS_URL:-}" ]; then
    redis_url=$REDIS_URL
    echo "bench: using REDIS_URL=$redis_url (its CPU is not measured)"
else
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "$tmp/redis.pid" --dir "$tmp" --logfile "$tmp/redis.log"
    for _ in $(seq 1 50); do
        [ -s "$tmp/redis.pid" ] && redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    redis_pid=$(cat "$tmp/redis.pid" 2>/dev/null || true)
    if [ -z "$redis_pid" ] || ! redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
        echo "bench: redis-server did not start:" >&2; cat "$tmp/redis.log" >&2 2>/dev/null || true; exit 1
    fi
    redis_url="redis://127.0.0.1:$redis_port"
    echo "bench: $(redis-server --version | cut -d' ' -f1-3), private on $redis_url, pid $redis_pid"
fi

# start_servers SCENARIO: SERVERS fresh server.js processes; sets urls and pid_args.
start_servers() {
    stop_servers
    local n port log prefix=${REDIS_PREFIX:-sio-bench-$$-$1}
    local url_list=()
    pid_args=()
    for n in $(seq 1 "$SERVERS"); do
        port=$(free_port)
        log="$results/$1-server-$n.log"
        PORT=$port REDIS_URL=$redis_url REDIS_PREFIX=$prefix node server.js > "$log" 2>&1 &
        server_pids+=($!)
        pid_args+=(--server-pid "$!")
        url_list+=("ws://127.0.0.1:$port")
        for _ in $(seq 1 100); do
            grep -q "listening" "$log" && break
            kill -0 "$!" 2>/dev/null || { echo "bench: server.js exited:" >&2; cat "$log" >&2; exit 1; }
            sleep 0.1
        done
        grep -q "listening" "$log" || { echo "bench: server.js on $port not ready" >&2; exit 1; }
        echo "bench: $(head -n 1 "$log")"
    done
    urls=$(IFS=,; echo "${url_list[*]}")
}

# bench_run NAME LOAD-ARGS...: runs load.js, with its command in NAME.cmd and
# its output in NAME.txt beside NAME.json.
bench_run() {
    local name=$1; shift
    local cmd=(node --max-old-space-size="$LOAD_HEAP_MB" load.js "$@" --url "$urls" "${pid_args[@]}" --report "$results/$name.json")
    [ -n "$redis_pid" ] && cmd+=(--redis-pid "$redis_pid")
    [ -n "$LOCAL_ADDRESS" ] && cmd+=(--local-address "$LOCAL_ADDRESS")
    echo "${cmd[*]}" > "$results/$name.cmd"
    echo; echo "bench: $name: ${cmd[*]}"
    "${cmd[@]}" > "$results/$name.txt" 2>&1 &
    load_pid=$!
    # Both in the background, so that a signal to this script is handled at
    # once (bash runs traps only between foreground commands, or in `wait`).
    tail -n +1 -f --pid="$load_pid" "$results/$name.txt" &
    tail_pid=$!
    local status=0
    wait "$load_pid" || status=$?
    wait "$tail_pid" || true
    load_pid=""
    tail_pid=""
    [ "$status" = 0 ] || { echo "bench: $name: load.js exited with $status" >&2; exit 1; }
}

scenarios=("${@:-idle fanout}")
for scenario in ${scenarios[*]}; do
    case $scenario in
        idle)
            start_servers idle
            bench_run idle idle --connections "$IDLE_CONNECTIONS" --connect-rate "$IDLE_CONNECT_RATE" --duration "$DURATION"
            ;;
        fanout)
            start_servers fanout
            bench_run fanout fanout --connections "$FANOUT_CONNECTIONS" --group-size "$GROUP_SIZE" --rate "$RATE" \
                --connect-rate "$FANOUT_CONNECT_RATE" --duration "$DURATION"
            ;;
        *) echo "bench: unknown scenario $scenario" >&2; exit 2 ;;
    esac
    stop_servers
done
echo "bench: done; results in $(cd "$results" && pwd)"
