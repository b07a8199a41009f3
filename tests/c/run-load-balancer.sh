#!/bin/sh
# run-load-balancer.sh SERVER BALANCER LOAD: runs the C++ load example
# (built on the drop-in headers, unchanged) through the `load` balancer in
# front of three real server processes, in write, read and scan modes, and
# checks that every server holds what it wrote. Used by `make c-test`.
#
# Ports are picked from the process id; if one is taken, a process exits at
# once and the next set of ports is tried.
set -eu

server=$1
balancer=$2
load=$3
work=$(mktemp -d)
pids=
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

fail() {
    echo "run-load-balancer: $*" >&2
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
    exit 1
}

all_alive() {
    for p in $pids; do kill -0 "$p" 2>/dev/null || return 1; done
}

stop_all() {
    for p in $pids; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=
}

# Starts three servers and the balancer; sets $p0 $p1 $p2 $lb.
start_cluster() {
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        base=$(( 20000 + ($$ * 13 + attempt * 7919) % 40000 ))
        p0=$base; p1=$((base + 1)); p2=$((base + 2)); lb=$((base + 3))
        RUST_LOG=warn "$server" $p0 0 2 1 127.0.0.1 $p1 2 127.0.0.1 $p2 --bind 127.0.0.1 2>"$work/s0.log" &
        pids="$pids $!"
        RUST_LOG=warn "$server" $p1 1 2 0 127.0.0.1 $p0 2 127.0.0.1 $p2 --bind 127.0.0.1 2>"$work/s1.log" &
        pids="$pids $!"
        RUST_LOG=warn "$server" $p2 2 2 0 127.0.0.1 $p0 1 127.0.0.1 $p1 --bind 127.0.0.1 2>"$work/s2.log" &
        pids="$pids $!"
        RUST_LOG=warn "$balancer" $lb 0 3 0 127.0.0.1 $p0 1 127.0.0.1 $p1 2 127.0.0.1 $p2 --bind 127.0.0.1 2>"$work/load.log" &
        pids="$pids $!"
        tries=0
        while [ $tries -lt 50 ] && all_alive; do
            # One customer, zero reads: succeeds once each process listens.
            if "$load" 127.0.0.1 $p0 1 0 2 >/dev/null 2>&1 && "$load" 127.0.0.1 $p1 1 0 2 >/dev/null 2>&1 \
                && "$load" 127.0.0.1 $p2 1 0 2 >/dev/null 2>&1 && "$load" 127.0.0.1 $lb 1 0 2 >/dev/null 2>&1; then
                all_alive && return 0
            fi
            sleep 0.1
            tries=$((tries + 1))
        done
        stop_all
    done
    fail "cannot start three servers and $balancer"
}

stats='^[0-9]+\.[0-9]{3}	[0-9]+\.[0-9]{3}	[0-9]+\.[0-9]{3}	[0-9]+\.[0-9]{3}$'

start_cluster
"$load" 127.0.0.1 $lb 4 25 1 >"$work/write.out" || fail "write mode through the balancer failed"
tail -n 1 "$work/write.out" | grep -Eq "$stats" || fail "write mode: no stats line: $(cat "$work/write.out")"
"$load" 127.0.0.1 $lb 4 10 2 >"$work/read.out" || fail "read mode through the balancer failed"
tail -n 1 "$work/read.out" | grep -Eq "$stats" || fail "read mode: no stats line: $(cat "$work/read.out")"
printf '0\t24\n1\t24\n2\t24\n3\t24\n4\t-1\n5\t-1\n' >"$work/scan.want"
"$load" 127.0.0.1 $lb 1 6 3 >"$work/scan.out" || fail "scan mode through the balancer failed"
cmp -s "$work/scan.out" "$work/scan.want" || fail "scan through the balancer printed: $(cat "$work/scan.out")"
# Every server holds the writes (a backup learns the last commit with the
# next frame, so it is given a moment).
for p in $p0 $p1 $p2; do
    tries=0
    until "$load" 127.0.0.1 $p 1 6 3 >"$work/scan.$p" 2>/dev/null && cmp -s "$work/scan.$p" "$work/scan.want"; do
        tries=$((tries + 1))
        [ $tries -lt 100 ] || fail "server on port $p printed: $(cat "$work/scan.$p")"
        sleep 0.1
    done
done
echo "run-load-balancer: write, read and scan modes ok through $balancer (port $lb) in front of 3 servers"
echo "  write: $(tail -n 1 "$work/write.out")"
