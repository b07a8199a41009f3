#!/bin/sh
# run-load.sh SERVER LOAD: runs the C++ load example (built on the drop-in
# headers) against a real server binary in write, read and scan modes and
# checks its output. Used by `make c-test`.
#
# The server listens on 127.0.0.1 at a random port below the kernel's
# ephemeral range (so no outgoing connection of another test can hold
# it). The port is used only once the server itself has logged that it
# listens there: then it holds 127.0.0.1:PORT and no other program can
# answer on it. If the port is taken the server exits at once and another
# one is tried.
set -eu

server=$1
load=$2
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

fail() { echo "run-load: $*" >&2; [ -f "$work/server.log" ] && cat "$work/server.log" >&2; exit 1; }

# The lowest ephemeral port (Linux; 32768 elsewhere or if unreadable).
ephemeral_low() {
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true)
    case "$low" in ''|*[!0-9]*) low=32768 ;; esac
    [ "$low" -gt 11000 ] || low=32768
    echo "$low"
}

# Starts the server on a free port; sets $port and $pid.
start_server() {
    low=$(ephemeral_low)
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        random=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
        port=$(( 10000 + (random + attempt) % (low - 10000) ))
        RUST_LOG=info "$server" "$port" 0 0 --bind 127.0.0.1 2>"$work/server.log" &
        pid=$!
        tries=0
        # Bounded: 100 looks, 0.1 s apart.
        while [ $tries -lt 100 ]; do
            if grep -q "listening on 127\.0\.0\.1:$port\$" "$work/server.log" 2>/dev/null; then return 0; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
            tries=$((tries + 1))
        done
        grep -q "already in use" "$work/server.log" || fail "$server did not start on port $port"
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    done
    fail "cannot start $server: 10 ports were taken"
}

stats='^[0-9]+\.[0-9]{3}	[0-9]+\.[0-9]{3}	[0-9]+\.[0-9]{3}	[0-9]+\.[0-9]{3}$'

start_server
"$load" 127.0.0.1 "$port" 4 25 1 >"$work/write.out" || fail "write mode failed"
tail -n 1 "$work/write.out" | grep -Eq "$stats" || fail "write mode: no stats line: $(cat "$work/write.out")"
"$load" 127.0.0.1 "$port" 4 10 2 >"$work/read.out" || fail "read mode failed"
tail -n 1 "$work/read.out" | grep -Eq "$stats" || fail "read mode: no stats line: $(cat "$work/read.out")"
"$load" 127.0.0.1 "$port" 1 6 3 >"$work/scan.out" || fail "scan mode failed"
printf '0\t24\n1\t24\n2\t24\n3\t24\n4\t-1\n5\t-1\n' >"$work/scan.want"
cmp -s "$work/scan.out" "$work/scan.want" || fail "scan mode printed: $(cat "$work/scan.out")"
echo "run-load: write, read and scan modes ok against $server (port $port)"
echo "  write: $(tail -n 1 "$work/write.out")"
