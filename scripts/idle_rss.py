#!/usr/bin/env python3
"""Resident memory of a server holding idle client connections.

    scripts/idle_rss.py [--server PATH] [--connections N] [--runs K]

Starts a release `server PORT 0 0 --bind 127.0.0.1` on a free loopback
port, waits for its "listening on" log line and reads its VmRSS, then opens
N connections (default 1,000) that each send the 8-byte CLIENT tag and one
read request, and stay idle once answered (so every connection thread is
past its handshake and serving), and reads VmRSS again. Prints one line per
run and the median growth per connection. Every wait is bounded; the server
is killed by its PID and the sockets closed at the end of each run, also on
errors. Needs `ulimit -n` above N. Python 3 standard library only.
"""

import argparse
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadbench import BenchError, free_port, wait_listening  # noqa: E402  (path first)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_TAG = b"CLIENT\0\0"
# A read of customer 0 (customer_id, order_number, request_type 2, big-endian)
# and the length of its reply (customer_id, last_order).
READ_REQUEST = struct.pack(">iii", 0, -1, 2)
READ_REPLY_LEN = 8
READY_TIMEOUT = 10.0  # the server must answer within this


def rss_kib(pid):
    """VmRSS of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "VmRSS":
                return int(value.split()[0])
    sys.exit(f"idle_rss: no VmRSS for pid {pid}")


def read_reply(s):
    """Reads the 8-byte reply to READ_REQUEST (the socket has a timeout)."""
    got = b""
    while len(got) < READ_REPLY_LEN:
        chunk = s.recv(READ_REPLY_LEN - len(got))
        if not chunk:
            sys.exit("idle_rss: the server closed a connection before answering")
        got += chunk


def one_run(server, connections):
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="idle_rss-", suffix=".log")
    argv = [server, str(port), "0", "0", "--bind", "127.0.0.1"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    socks = []
    try:
        try:
            wait_listening(proc, log.name, argv)
        except BenchError as e:
            sys.exit(f"idle_rss: {e}")
        rss0 = rss_kib(proc.pid)
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=READY_TIMEOUT)
            s.sendall(CLIENT_TAG + READ_REQUEST)
            socks.append(s)
        for s in socks:
            read_reply(s)
        return rss0, rss_kib(proc.pid)
    finally:
        for s in socks:
            s.close()
        proc.kill()
        proc.wait(timeout=READY_TIMEOUT)
        log.close()


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
