# Private Redis and PostgreSQL servers on free ports, for the test command
# and the benchmarks. Source it; call `services_start_redis` and
# `services_start_postgres`; `services_stop` (set as an EXIT trap) removes
# everything. Installs Debian's redis-server and postgresql when missing,
# and openssl, with which the TLS tests make their certificates.
# SERVICES_PG_EXTRA adds server options for a diagnosis, e.g.
# "-c shared_preload_libraries=pg_stat_statements" (docs/benchmarks-journal.md).
# SERVICES_PG_FSYNC=on makes PostgreSQL flush its log to disk at every
# commit, as a production server does; the benchmarks need that for a
# "durable" figure. The tests leave it off: they check what is stored, not
# what survives a power cut, and the flushes would only slow them.

source "$(dirname "${BASH_SOURCE[0]}")/free_port.sh"

services_dir=$(mktemp -d)
chmod 755 "$services_dir"

services_as_postgres() {
    # PostgreSQL refuses to run as root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_install() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
    command -v openssl >/dev/null || missing+=(openssl)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "services: installing ${missing[*]} from Debian's packages"
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    services_pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
}

# Sets SERVICES_REDIS_URL.
services_start_redis() {
    local port; port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "$services_dir/redis.pid" --dir "$services_dir" --logfile "$services_dir/redis.log"
    SERVICES_REDIS_URL="redis://127.0.0.1:$port"
}

# Sets SERVICES_POSTGRES_URL (the admin database). A port that looked free
# can be taken before the server binds it (a benchmark once lost one this
# way, untraced: the log went with the directory), so a failed start is
# retried on other ports, and the server's log is shown if all fail.
services_start_postgres() {
    local port attempt
    mkdir -p "$services_dir/pg" "$services_dir/pgsock"
    [ "$(id -u)" = 0 ] && chown postgres "$services_dir/pg" "$services_dir/pgsock"
    services_as_postgres "$services_pg_bin/initdb" -D "$services_dir/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    for attempt in 1 2 3; do
        port=$(free_port)
        if services_as_postgres "$services_pg_bin/pg_ctl" -D "$services_dir/pg" -l "$services_dir/pgsock/pg.log" -w \
            -o "-p $port -h 127.0.0.1 -k $services_dir/pgsock -c fsync=${SERVICES_PG_FSYNC:-off} -c max_connections=500 ${SERVICES_PG_EXTRA:-}" start >/dev/null; then
            SERVICES_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
            return 0
        fi
        echo "services: PostgreSQL did not start on port $port (attempt $attempt of 3); its log ends:" >&2
        tail -n 5 "$services_dir/pgsock/pg.log" >&2 || true
    done
    return 1
}

services_stop() {
    if [ -f "$services_dir/redis.pid" ]; then kill "$(cat "$services_dir/redis.pid")" 2>/dev/null || true; fi
    if [ -f "$services_dir/pg/postmaster.pid" ]; then
        services_as_postgres "$services_pg_bin/pg_ctl" -D "$services_dir/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$services_dir"
}
