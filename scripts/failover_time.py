#!/usr/bin/env python3
"""Time from a primary's death (SIGKILL) to the next acknowledged write.

Starts three release servers on free loopback ports, writes through the
primary, kills it, and times how long a writer that immediately turns to a
backup waits for its next acknowledged write (the backup takes over or
forwards). Repeats with a fresh cluster and prints each time and the median.

usage: failover_time.py [--reps N] [--data-dir]   (run `make` first)
"""

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import time

SERVER = "target/release/server"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"CLIENT\0\0")
    return s


def write(s, customer, order):
    s.sendall(struct.pack(">iii", customer, order, 1))
    reply = b""
    while len(reply) < 20:
        chunk = s.recv(20 - len(reply))
        if not chunk:
            raise ConnectionError("closed")
        reply += chunk
    return struct.unpack(">iiiii", reply)


def wait_listening(port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server on {port} did not start")


def one_run(data_dir):
    ports = free_ports(3)
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i, port in enumerate(ports):
                peers = []
                for j, p in enumerate(ports):
                    if j != i:
                        peers += [str(j), "127.0.0.1", str(p)]
                extra = ["--data-dir", os.path.join(tmp, f"s{i}")] if data_dir else []
                cmd = [SERVER, str(port), str(i), "2", *peers, "--bind", "127.0.0.1", *extra]
                procs.append(subprocess.Popen(cmd, stderr=subprocess.DEVNULL))
            for port in ports:
                wait_listening(port)
            s = connect(ports[0])
            for order in range(200):
                write(s, 1, order)
            s.close()
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            killed = time.monotonic()
            for _ in range(1000):
                try:
                    b = connect(ports[1])
                    write(b, 1, 200)
                    b.close()
                    return time.monotonic() - killed
                except OSError:
                    time.sleep(0.005)
            raise RuntimeError("no write succeeded after the kill")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--data-dir", action="store_true", help="servers use --data-dir (fsync always)")
    args = ap.parse_args()
    times = [one_run(args.data_dir) for _ in range(args.reps)]
    for i, t in enumerate(times):
        print(f"run {i + 1}: {t * 1000:.1f} ms")
    print(f"median: {statistics.median(times) * 1000:.1f} ms over {len(times)} runs")


if __name__ == "__main__":
    main()
