#!/usr/bin/env python3
"""Resident memory of a server holding idle client connections.

    scripts/idle_rss.py [--server PATH] [--connections N] [--runs K]

Starts a release `server PORT 0 0 --bind 127.0.0.1` on a free loopback
port, reads its VmRSS, opens N connections (default 1,000) that each send
the 8-byte CLIENT tag and then stay idle, waits until the server's thread
count has grown by N (one thread per connection, each past its handshake),
and reads VmRSS again. Prints one line per run and the median growth per
connection. Every wait is bounded; the server is killed by its PID and the
sockets closed at the end of each run, also on errors. Needs `ulimit -n`
above N. Python 3 standard library only.
"""

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_TAG = b"CLIENT\0\0"
READY_TIMEOUT = 10.0  # the server must accept, and grow its threads, within this
POLL = 0.02


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid):
    """VmRSS (KiB) and Threads of a process, from /proc/PID/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["VmRSS"][0]), int(fields["Threads"][0])


def wait_for(condition, what):
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(POLL)
    sys.exit(f"idle_rss: {what} within {READY_TIMEOUT:.0f} s")


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=POLL).close()
        return True
    except OSError:
        return False


def one_run(server, connections):
    port = free_port()
    proc = subprocess.Popen(
        [server, str(port), "0", "0", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socks = []
    try:
        wait_for(lambda: accepts(port), "the server did not accept")
        # Let the probe's connection thread end before the baseline.
        time.sleep(0.2)
        rss0, threads0 = status(proc.pid)
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=READY_TIMEOUT)
            s.sendall(CLIENT_TAG)
            socks.append(s)
        wait_for(
            lambda: status(proc.pid)[1] >= threads0 + connections,
            f"the server did not start {connections} connection threads",
        )
        # The threads exist; give the last ones a moment to read their tag.
        time.sleep(0.5)
        rss1, _ = status(proc.pid)
        return rss0, rss1
    finally:
        for s in socks:
            s.close()
        proc.kill()
        proc.wait(timeout=READY_TIMEOUT)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=os.path.join(ROOT, "target", "release", "server"))
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    if not os.access(args.server, os.X_OK):
        sys.exit(f"idle_rss: no server at {args.server}; run `make`")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.connections + 64:
        sys.exit(f"idle_rss: ulimit -n is {soft}; raise it above {args.connections + 64}")
    growth = []
    for run in range(args.runs):
        rss0, rss1 = one_run(args.server, args.connections)
        growth.append((rss1 - rss0) / args.connections)
        print(f"run {run + 1}: VmRSS {rss0 / 1024:.1f} MiB idle, "
              f"{rss1 / 1024:.1f} MiB with {args.connections} idle clients")
    print(f"median growth: {statistics.median(growth):.1f} KiB per idle connection")


if __name__ == "__main__":
    main()
