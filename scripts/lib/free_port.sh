# `free_port`: a TCP port nothing listens on, for a server a script starts.
# Source it. Shared by the test command's services (services.sh) and the
# benchmarks (bench/common.sh, bench/socketio/run.sh); the tests' Rust
# harness picks the same way (testkit::free_port).
#
# Below the kernel's ephemeral range: a port in that range may be the local
# port of a client socket, open or in TIME_WAIT for a minute after a run's
# clients closed, and a server cannot bind it although connecting to it
# fails (a benchmark after a reconnect storm of 38,000 connections lost its
# gateway to `Address already in use`, docs/benchmarks-journal.md,
# fifteenth session).
free_port() {
    local port low=32768
    read -r low _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    [ "$low" -gt 12000 ] || low=32768
    while :; do
        port=$(( (RANDOM % (low - 10000)) + 10000 ))
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}
