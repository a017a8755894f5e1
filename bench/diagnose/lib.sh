# Shared by the bench/diagnose scripts.

# diagnose_wait_for_run: returns once a `loadtest run` starts that was not
# running when the script began (one still exiting from the previous run
# must not start the watch).
diagnose_wait_for_run() {
    local before
    before=" $(pgrep -f 'loadtest run' | tr '\n' ' ' || true) "
    while :; do
        for pid in $(pgrep -f 'loadtest run'); do
            [[ $before == *" $pid "* ]] || return 0
        done
        sleep 0.2
    done
}

# diagnose_settled_run: waits for the run (diagnose_wait_for_run), then 5 s
# more, past the connecting and into the measured phase.
diagnose_settled_run() {
    diagnose_wait_for_run
    sleep 5
}

# diagnose_private_postgres: the newest postmaster started with `-D DIR -p
# PORT` (the bench scripts' private server; the machine's is older), as
# "PID PORT"; fails if there is none.
diagnose_private_postgres() {
    local pid port
    # Newest first, skipping a backend caught between its fork and renaming
    # itself: it still carries the postmaster's command line, but its
    # parent is the postmaster (and by the time it is read it may be gone).
    local matching
    matching=$(pgrep -d, -f 'postgres -D [^ ]* -p [0-9]+') || matching=""
    for pid in $([ -n "$matching" ] && ps -o pid= --sort=-start_time -p "$matching"); do
        [ "$(cat "/proc/$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)/comm" 2>/dev/null)" = postgres ] && continue
        port=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -o -- '-p [0-9]*' | grep -o '[0-9]*$') || continue
        echo "$pid $port"
        return 0
    done
    echo "diagnose: no private PostgreSQL running" >&2
    return 1
}

# diagnose_cpu_delta OUT SNAPSHOT: runs SNAPSHOT, a function printing
# "name|clock ticks" lines (a name may repeat: they are summed), now and
# 10 s later, and writes to OUT each name's CPU seconds in between.
# Processes that exit within the 10 s are not counted.
diagnose_cpu_delta() {
    local out=$1 snapshot=$2 tmp
    tmp=$(mktemp -d)
    sum_by_name() { awk -F'|' '{s[$1]+=$2} END {for (k in s) print k "|" s[k]}' | sort; }
    "$snapshot" | sum_by_name > "$tmp/0"
    sleep 10
    "$snapshot" | sum_by_name > "$tmp/1"
    join -t'|' "$tmp/0" "$tmp/1" | awk -F'|' '{printf "%s %.2f CPU-s in 10 s\n", $1, ($3-$2)/100}' > "$out"
    rm -rf "$tmp"
}

# diagnose_alice_and_bob BUILD_DIR PORT [NAME=VALUE...]: starts BUILD_DIR's
# gateway, standalone, on PORT with an empty data directory and the given
# settings, stopped and removed when the script exits; sets `gw` (its
# pid), `dir`, `alice` and `bob` (their tokens) and `chat` (a group of the
# two).
diagnose_alice_and_bob() {
    local bin=$1 port=$2
    shift 2
    dir=$(mktemp -d)
    env "$@" DATA_DIR="$dir" LISTEN_ADDR="127.0.0.1:$port" "$bin/gateway" > "$dir/log" 2>&1 &
    gw=$!
    trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; rm -rf "$dir"' EXIT
    until curl -sf "127.0.0.1:$port/healthz" > /dev/null; do sleep 0.1; done
    alice=$(DATA_DIR=$dir "$bin/gateway" token --user alice)
    bob=$(DATA_DIR=$dir "$bin/gateway" token --user bob)
    chat=$(curl -s -X POST "127.0.0.1:$port/v1/chats" -H "Authorization: Bearer $alice" \
        -d '{"type":"group","name":"g","members":["bob"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
}
