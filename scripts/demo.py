#!/usr/bin/env python3
"""make demo: a three-server cluster on free loopback ports.

Starts three servers (each with the other two as peers), writes
8 customers x 1,000 orders through the first with the client, scans every
server, prints the client's stats and each server's records, stops exactly
the processes it started, and exits 1 if the servers disagree.

usage: demo.py SERVER_BINARY CLIENT_BINARY
"""

import socket
import subprocess
import sys
import tempfile
import time

CUSTOMERS = 8
ORDERS = 1000
DEADLINE_S = 10.0


def free_ports(n):
    """n distinct ports that were free on 127.0.0.1 a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_listening(port, proc):
    """Waits until the server accepts connections; False if it exited."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_cluster(server_bin, logdir):
    """Starts three servers; returns (processes, ports) or None if a port was taken."""
    ports = free_ports(3)
    procs = []
    for i, port in enumerate(ports):
        peers = []
        for j, peer_port in enumerate(ports):
            if j != i:
                peers += [str(j), "127.0.0.1", str(peer_port)]
        log = open(f"{logdir}/server{i}.log", "w")
        cmd = [server_bin, str(port), str(i), "2", *peers, "--bind", "127.0.0.1"]
        print("$ server", " ".join(cmd[1:]))
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
    for proc, port in zip(procs, ports):
        if not wait_listening(port, proc):
            stop(procs)
            return None
    return procs, ports


def stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def scan(client_bin, port):
    out = subprocess.run(
        [client_bin, "127.0.0.1", str(port), "1", str(CUSTOMERS), "3"],
        capture_output=True, text=True, timeout=DEADLINE_S, check=True,
    ).stdout
    return dict(tuple(map(int, line.split("\t"))) for line in out.splitlines())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    server_bin, client_bin = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="factory-demo-") as logdir:
        started = None
        for _ in range(3):
            started = start_cluster(server_bin, logdir)
            if started:
                break
        if not started:
            sys.exit("demo: could not start three servers (see their logs)")
        procs, ports = started
        try:
            return run(client_bin, ports)
        finally:
            stop(procs)


def run(client_bin, ports):
    cmd = ["client", "127.0.0.1", str(ports[0]), str(CUSTOMERS), str(ORDERS), "1"]
    print("$", " ".join(cmd))
    write = subprocess.run([client_bin, *cmd[1:]], capture_output=True, text=True,
                           timeout=120)
    if write.returncode != 0:
        print(write.stderr, end="")
        return 1
    mean, lo, hi, ops = write.stdout.split()
    print(f"writes: {CUSTOMERS} x {ORDERS} through server 0: mean {mean} us, "
          f"min {lo} us, max {hi} us, {ops} writes/s")

    expected = {c: ORDERS - 1 for c in range(CUSTOMERS)}
    end = time.monotonic() + DEADLINE_S
    while True:
        scans = [scan(client_bin, port) for port in ports]
        if all(s == expected for s in scans) or time.monotonic() > end:
            break
        time.sleep(0.05)  # backups apply the last entries on the primary's commit notice
    print("customer  " + "  ".join(f"server{i}" for i in range(len(ports))))
    for c in range(CUSTOMERS):
        print(f"{c:>8}  " + "  ".join(f"{s.get(c, '?'):>7}" for s in scans))
    if all(s == expected for s in scans):
        print("all three servers agree: every customer's last order is", ORDERS - 1)
        return 0
    print("demo: the servers disagree", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
