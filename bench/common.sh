# Shared by the benchmark scripts: builds, result folders, running one
# loadtest scenario with its command recorded next to its report.

# SERVER_BIN: where the gateway and worker binaries come from (default: this
# checkout's release build), e.g. an older commit's build for a before/after
# run on the same day; LOADTEST_BIN likewise for the load tool (a path to
# its binary); LABEL names such a run's result folder. LOADTEST_ARGS adds
# flags to every `loadtest run` (e.g. "--ping-ms 25000"), recorded in
# each run's .cmd like the rest.
source scripts/lib/free_port.sh
# Built only when a binary comes from this checkout: with SERVER_BIN and
# LOADTEST_BIN both given, a before/after series leaves the working tree
# alone, and a tree in the middle of an edit neither rebuilds nor fails
# between its runs.
if [ -z "${SERVER_BIN:-}" ] || [ -z "${LOADTEST_BIN:-}" ]; then
    cargo build --release -q -p gateway -p worker -p loadtest
fi
server_bin=${SERVER_BIN:-target/release}
loadtest_bin=${LOADTEST_BIN:-target/release/loadtest}
results="bench/results/$(date -u +%Y-%m-%d)-$1${LABEL:+-$LABEL}"
mkdir -p "$results"
# A set run again the same day writes to the same folder: only this run's
# failures count.
rm -f "$results/FAILED"
echo "bench: results in $results"

# bench_run NAME LOADTEST-ARGS...: runs `loadtest run` and records the
# exact command in NAME.cmd beside NAME.json and NAME/ (charts).
bench_run() {
    local name=$1; shift
    # shellcheck disable=SC2086 # LOADTEST_ARGS is a list of flags
    bench_record "$name" "$loadtest_bin" run "$@" ${LOADTEST_ARGS:-} --report "$results/$name.json" --charts "$results/$name"
}

# bench_record NAME COMMAND...: runs COMMAND with its command line in
# NAME.cmd and its output in NAME.txt. A run that says it did not measure
# what was asked (loadtest exits non-zero after its summary, which gives
# the reasons: connections failed or dropped, a server exited) is listed
# in the set's FAILED file, and the set goes on with its other scenarios.
bench_record() {
    local name=$1; shift
    echo "${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${SERVER_ENV:+SERVER_ENV=\"$SERVER_ENV\" }$*" > "$results/$name.cmd"
    echo; echo "bench: $name: $*"
    local status=0
    "$@" | tee "$results/$name.txt" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "$name: exited $status (see $name.txt)" >> "$results/FAILED"
    fi
}

# bench_end: after the set's summary, names the runs that failed, if any,
# and fails the set.
bench_end() {
    if [ -f "$results/FAILED" ]; then
        echo; echo "bench: these runs did not measure what was asked:"; cat "$results/FAILED"
        return 1
    fi
}

# bench_services: a private Redis and PostgreSQL (scripts/lib/services.sh,
# which the caller sources and stops), their URLs exported with the JWT
# secret the benchmarks sign with, and the schema migrated by SERVER_BIN's
# worker.
bench_services() {
    services_install
    # The folder services.sh made when sourced, made again after a
    # services_stop removed it (cluster.sh restarts the services per run).
    mkdir -p "$services_dir"; chmod 755 "$services_dir"
    services_start_redis
    if [ "${PGSS:-0}" = 1 ]; then
        SERVICES_PG_EXTRA="${SERVICES_PG_EXTRA:-} -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
    fi
    services_start_postgres
    export REDIS_URL=$SERVICES_REDIS_URL DATABASE_URL=$SERVICES_POSTGRES_URL JWT_SECRET=bench-secret
    "$server_bin"/worker migrate
}

# With PGSS=1, bench_services loads pg_stat_statements into its
# PostgreSQL, and scripts that support it (bench/big-group.sh) wrap a
# measured step in bench_pgss_reset and bench_pgss_dump OUT: OUT gets the
# statements of that step by PostgreSQL's time, with their calls, time
# executing and planning, and rows. Where a step is slower than its
# statements suggest, this says which one (docs/benchmarks-journal.md,
# forty-eighth session). Without PGSS=1 both do nothing.
bench_pgss_reset() {
    [ "${PGSS:-0}" = 1 ] || return 0
    psql -q "$DATABASE_URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
}
bench_pgss_dump() {
    [ "${PGSS:-0}" = 1 ] || return 0
    psql -q "$DATABASE_URL" -c "SELECT calls, round(total_exec_time::numeric, 1) AS exec_ms,
        round(total_plan_time::numeric, 1) AS plan_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 150) AS statement
        FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12" > "$1"
}

# bench_stop_at_exit VAR...: however the script ends, stops the processes
# whose pids the variables VAR... hold by then, each step whatever the
# last one's status (a load tool stopped by its signal exits non-zero,
# which under `set -e` would end the trap there and leave the servers
# running), removes $data, and stops the private services, if any
# (scripts/lib/services.sh). A signal ends the script through that trap.
bench_stop_at_exit() {
    bench_stopped_at_exit=("$@")
    trap bench_stop_all EXIT
    trap 'exit 130' INT TERM
}
bench_stop_all() {
    local name pid
    for name in "${bench_stopped_at_exit[@]}"; do
        pid=${!name:-}
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "${data:-}"
    if declare -F services_stop > /dev/null; then services_stop; fi
    true
}

# bench_wait_ready PORT: the gateway answers /readyz.
bench_wait_ready() {
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            if printf 'GET /readyz HTTP/1.0\r\n\r\n' | (exec 3<>"/dev/tcp/127.0.0.1/$1"; cat >&3; cat <&3) 2>/dev/null | grep -q ' 200 '; then return 0; fi
        fi
        sleep 0.1
    done
    echo "bench: gateway on $1 not ready" >&2; return 1
}

# bench_floor NAME [FLOOR-ARGS...]: `loadtest floor` at the fan-out rate,
# its command in NAME.cmd and its summary in NAME.txt.
bench_floor() {
    local name=$1; shift
    bench_record "$name" "$loadtest_bin" floor --connections 2000 --rate 20000 --duration 10 "$@"
}

# bench_need_valgrind: installs Debian's valgrind if it is missing (the
# callgrind scripts).
bench_need_valgrind() {
    command -v valgrind > /dev/null && return 0
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "bench: installing valgrind"
    $sudo apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q valgrind > /dev/null
}

# bench_ten_lists_at_once API TOKEN DIR [CURL-ARG...]: ten clients read
# API/chats at once, into DIR/list-1.json to list-10.json; prints the
# milliseconds until the last had all of its list, and fails if a read did.
bench_ten_lists_at_once() {
    local api=$1 token=$2 dir=$3 started pid i
    local pids=()
    shift 3
    started=$(date +%s.%N)
    for i in $(seq 1 10); do
        curl -sf "$@" -o "$dir/list-$i.json" "$api/chats" -H "Authorization: Bearer $token" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || { echo "bench: a chat list read failed" >&2; return 1; }; done
    echo "$started $(date +%s.%N)" | awk '{printf "%.0f", ($2 - $1) * 1000}'
}

# bench_history_servers MODE: the servers bench/delete-chat.sh,
# bench/prune.sh and bench/prune-round.sh measure, on a new $data:
# standalone, one gateway; cluster, one gateway and one worker on a
# private Redis and PostgreSQL; any other MODE ends the script with its
# usage. Stops them, and a writer_pid the script sets, at its exit.
# Defines `sql` (runs SQL on their database) and `padding_sql`, and sets
# server_pid, worker_pid, `api`, tokens `alice` and `carol`, and `chat`, a
# group of alice's and bob's. REST_RATE=0: the chat creations meanwhile
# are timed, not rationed.
bench_history_servers() {
    case $1 in
        standalone | cluster) ;;
        *) echo "usage: bench/$(basename "$0") [standalone|cluster]" >&2; exit 64 ;;
    esac
    server_pid="" worker_pid="" writer_pid=""
    data=$(mktemp -d)
    bench_stop_at_exit writer_pid worker_pid server_pid
    case $1 in
        standalone)
            sql() { sqlite3 -cmd '.timeout 10000' "$data/chat.db" "$@"; }
            padding_sql() { echo "replace(hex(zeroblob($1 / 2)), '0', 'x')"; }
            ;;
        cluster)
            bench_services
            sql() { psql -Atq "$DATABASE_URL" -c "$@"; }
            padding_sql() { echo "repeat('x', $1 / 2 * 2)"; }
            ;;
    esac
    local port
    port=$(free_port)
    REST_RATE=0 NODE_ID=gw-1 "$server_bin"/gateway --listen "127.0.0.1:$port" --data-dir "$data" > "$results/gateway.log" 2>&1 &
    server_pid=$!
    if [ "$1" = cluster ]; then
        WORKER_ID=worker-1 ADMIN_LISTEN=127.0.0.1:0 "$server_bin"/worker > "$results/worker.log" 2>&1 &
        worker_pid=$!
    fi
    bench_wait_ready "$port"
    alice=$("$server_bin"/gateway token --user alice --data-dir "$data")
    carol=$("$server_bin"/gateway token --user carol --data-dir "$data")
    api="http://127.0.0.1:$port/v1"
    chat=$(curl -sf -X POST "$api/chats" -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' \
        --data-binary '{"type":"group","name":"long","members":["bob"]}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
}

# bench_history_alive: fails, saying which, if a server of
# bench_history_servers stopped.
bench_history_alive() {
    kill -0 "$server_pid" 2>/dev/null || { echo "bench: the gateway stopped" >&2; return 1; }
    [ -z "$worker_pid" ] || kill -0 "$worker_pid" 2>/dev/null || { echo "bench: the worker stopped" >&2; return 1; }
}

# bench_long_history CHAT COUNT [LURKER] [BODY_BYTES]: gives CHAT,
# alice's and bob's group, COUNT messages of alice's with their `new`
# events, bob's delivered and read ranges (one per 10 messages each) and
# both members' marks at the last message (they have read it all); with
# LURKER=1 bob has read nothing (no ranges, marks at 0). BODY_BYTES (even)
# pads each message's text with that many bytes, in the message and in
# its event. Written straight into the database through the caller's
# `sql` function (SQL that SQLite and PostgreSQL both run, but for
# `padding_sql`): sending a million messages would take minutes and
# measure the sends. Their times are of 2023, outside any retention
# window but by count.
bench_long_history() {
    local chat=$1 count=$2 lurker=${3:-0} body_bytes=${4:-0}
    local text="'message number ' || i || ' of a long history'"
    [ "$body_bytes" -gt 0 ] && text="$text || $(padding_sql "$body_bytes")"
    echo "progress: writing $count messages into chat $chat" >&2
    sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
         INSERT INTO messages (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id)
         SELECT $chat, i, 'alice', 'c' || i, $text, '[]', 1700000000000 + i, i FROM n"
    echo "progress: messages written; their events" >&2
    sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
         INSERT INTO events (chat_id, id, message_id, kind, payload, created_at)
         SELECT $chat, i, i, 'new', '{\"chatId\":$chat,\"eventId\":' || i || ',\"userId\":\"alice\",\"messageId\":' || i
           || ',\"timestamp\":' || (1700000000000 + i) || ',\"type\":\"new\",\"clientMessageId\":\"c' || i
           || '\",\"message\":\"' || $text || '\"}', 1700000000000 + i FROM n"
    echo "progress: events written; the marks" >&2
    [ "$lurker" = 1 ] || sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count / 10)
         INSERT INTO mark_ranges (chat_id, user_id, kind, first_message_id, last_message_id, at)
         SELECT $chat, 'bob', k.kind, i * 10 - 9, i * 10, 1700000000000 + i * 10 FROM n
         CROSS JOIN (SELECT 'dlvrd' AS kind UNION ALL SELECT 'read') k"
    sql "UPDATE chats SET last_message_id = $count, last_event_id = $count WHERE id = $chat"
    # Read up to the last message: a member's unread count, which a
    # membership change or deletion tells them, then costs nothing (see
    # docs/benchmarks-journal.md, forty-seventh session, for one who read
    # nothing).
    local readers="'alice', 'bob'"
    [ "$lurker" = 1 ] && readers="'alice'"
    sql "UPDATE members SET delivered_mark = $count, read_mark = $count WHERE chat_id = $chat AND user_id IN ($readers)"
}

# bench_creations_until STOP-FILE API TOKEN OUT: creates empty groups one
# after another until STOP-FILE exists, a line per call in OUT: when it
# started (epoch seconds), its status and its seconds. What a long
# deletion or prune costs the store's other writers.
bench_creations_until() {
    local stop=$1 api=$2 token=$3
    while [ ! -e "$stop" ]; do
        printf '%s ' "$(date +%s.%N)"
        # A call that could not connect is counted as failed (000), not
        # the end of the loop.
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$api/chats" -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/json' --data-binary '{"type":"group","name":"meanwhile","members":[]}' \
            || echo "000 0"
    done > "$4"
}

# bench_creations_summary OUT FROM TO WHILE: the calls of
# bench_creations_until in OUT, and on their own those whose span met
# FROM..TO (epoch seconds), labelled "while WHILE".
bench_creations_summary() {
    awk -v from="$2" -v to="$3" -v label="while $4:" '
        {n++; if ($2 !~ /^2/) bad++; if ($3 > max) max = $3; sum += $3}
        $1 <= to && $1 + $3 >= from {during++; if ($3 > worst) worst = $3}
        END {
            printf "chat creations meanwhile:  %d, %d failed, mean %.1f ms, slowest %.1f ms\n", n, bad, n ? 1000 * sum / n : 0, 1000 * max
            printf "  %-24s %d, slowest %.1f ms\n", label, during, 1000 * worst
        }' "$1"
}
