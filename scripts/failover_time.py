#!/usr/bin/env python3
"""Failover time of a 3-server cluster, and spurious failovers under load.

Failover mode (the default): for each fault kind (SIGKILL, SIGSTOP, a
blackhole cut of the primary), RUNS fresh clusters of release servers on
free loopback ports. Once the election has chosen a primary (no client
write is needed for that), writers probe every 20 ms, the primary is hit,
and the script times, from the fault:

  status   the first status answer naming a new primary (asked every 10 ms)
  direct   the first write acknowledged by a server of the majority (a v1
           write sent to each survivor every 20 ms, each on a connection of
           its own; a backup forwards it to its primary)
  cluster  the first write acknowledged through the cluster client (the
           Python binding's Cluster, libfactory's factory_cluster_*, with
           --cluster-deadline), one writer every 20 ms whose session is
           open on the old primary when the fault strikes

Only writes sent after the fault count. With --fault blackhole the servers'
peer lists and every client name proxies run by this script (threads that
forward bytes and, for the cut, stop forwarding them both ways, holding
the connections open as a network that drops packets does); the other
faults use the servers' own ports. Prints each run and, per fault and
measure, the median and the maximum.

--g8: one cluster, no faults, 8 writers through the cluster client for
--seconds (60), status asked every 50 ms; prints the epochs seen and the
number of epoch changes (issue 13's G8: it should be 0).

usage: failover_time.py [--runs N] [--fault kill|stop|blackhole|all]
                        [--cluster-deadline S] [--g8 [--seconds S]] [--server PATH]
Run `make` first (release server and libfactory); run it under
`flock /work/wt/bench.lock` on a shared machine.
"""

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
import factory  # noqa: E402  (the binding, found beside this script)

SERVER = os.path.join(HERE, "..", "target", "release", "server")
PROBE_EVERY = 0.020
# A direct probe gives up after this long; at most this many are open.
DIRECT_TIMEOUT = 2.0
MAX_IN_FLIGHT = 150
STATUS_EVERY = 0.010
STATUS_TAG = b"FSTA\0\0\0\x01"
ROLES = {0: "unknown", 1: "primary", 2: "backup", 3: "candidate", 4: "witness"}
# How long one run may wait for the first primary, and for the failover.
START_LIMIT = 20.0
FAILOVER_LIMIT = 15.0


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# --- the status request ------------------------------------------------------


def status(port, timeout=0.3):
    """(role, epoch, primary_id) of the server at port, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(STATUS_TAG)
            head = recv_exact(s, 4)
            (length,) = struct.unpack(">I", head)
            if not 46 <= length <= 1024:
                return None
            body = recv_exact(s, length)
    except OSError:
        return None
    role = ROLES.get(body[1], "?")
    (epoch,) = struct.unpack(">Q", body[8:16])
    (primary,) = struct.unpack(">i", body[16:20])
    return role, epoch, primary


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    return got


def settled_primary(ports):
    """(id, epoch) when one server is primary and the others follow it."""
    views = [status(p) for p in ports]
    prim = [(i, v) for i, v in enumerate(views) if v and v[0] == "primary"]
    if len(prim) != 1:
        return None
    i, (_, epoch, _) = prim[0]
    for j, v in enumerate(views):
        if j != i and not (v and v[0] == "backup" and v[2] == i and v[1] == epoch):
            return None
    return i, epoch


# --- a small proxy ------------------------------------------------------------


class Proxy:
    """Forwards connections from a loopback port to a target port; cut()
    stops forwarding both ways (bytes held, connections left open) until
    heal(). Threads are daemons; close() ends the listener."""

    def __init__(self, target):
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.closed = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client):
        try:
            server = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            server.settimeout(None)
        except OSError:
            client.close()
            return
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns.append((client, server))
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                # A cut holds the bytes: nothing is read or sent meanwhile.
                while not self.open.wait(0.2):
                    if self.closed:
                        return
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open.clear()

    def heal(self):
        self.open.set()

    def close(self):
        self.closed = True
        self.open.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for pair in self.conns:
            for s in pair:
                try:
                    s.close()
                except OSError:
                    pass


# --- a cluster ----------------------------------------------------------------


class Cluster:
    """Three release servers on free ports; with proxied=True every link
    between servers and every client path goes through a Proxy."""

    def __init__(self, server, proxied, n=3):
        self.n = n
        self.ports = free_ports(n)
        self.proxied = proxied
        # links[a][b]: the proxy a's peer list names for b.
        self.links = [[None] * n for _ in range(n)]
        self.client_proxies = []
        if proxied:
            for a in range(n):
                for b in range(n):
                    if a != b:
                        self.links[a][b] = Proxy(self.ports[b])
            self.client_proxies = [Proxy(p) for p in self.ports]
        self.procs = []
        self.stopped = set()
        self.tmp = tempfile.TemporaryDirectory()
        for i in range(n):
            peers = []
            for j in range(n):
                if j != i:
                    port = self.links[i][j].port if proxied else self.ports[j]
                    peers += [str(j), "127.0.0.1", str(port)]
            log = open(os.path.join(self.tmp.name, "s%d.log" % i), "w")
            cmd = [server, str(self.ports[i]), str(i), str(n - 1), *peers, "--bind", "127.0.0.1"]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log))

    def client_port(self, i):
        return self.client_proxies[i].port if self.proxied else self.ports[i]

    def addresses(self):
        return ["127.0.0.1:%d" % self.client_port(i) for i in range(self.n)]

    def wait_primary(self, limit=START_LIMIT):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            got = settled_primary(self.ports)
            if got:
                return got
            time.sleep(0.02)
        raise RuntimeError("no primary within %.0f s: %s" % (limit, [status(p) for p in self.ports]))

    def fault(self, kind, victim):
        if kind == "kill":
            self.procs[victim].send_signal(signal.SIGKILL)
        elif kind == "stop":
            self.procs[victim].send_signal(signal.SIGSTOP)
            self.stopped.add(victim)
        else:
            for a in range(self.n):
                for b in range(self.n):
                    if a != b and victim in (a, b):
                        self.links[a][b].cut()
            self.client_proxies[victim].cut()

    def log(self, i):
        with open(os.path.join(self.tmp.name, "s%d.log" % i)) as f:
            return f.read()

    def close(self):
        for i in self.stopped:
            try:
                self.procs[i].send_signal(signal.SIGCONT)
            except OSError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for row in self.links:
            for proxy in row:
                if proxy:
                    proxy.close()
        for proxy in self.client_proxies:
            proxy.close()
        self.tmp.cleanup()


# --- probes -------------------------------------------------------------------


class First:
    """The earliest acknowledgement of a write sent after the fault."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fault_at = None
        self.first = None
        self.acks = 0

    def record(self, sent, acked):
        with self.lock:
            self.acks += 1
            if self.fault_at is not None and sent >= self.fault_at:
                if self.first is None or acked < self.first:
                    self.first = acked


def v1_write(port, customer, order, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"CLIENT\0\0" + struct.pack(">iii", customer, order, 1))
        reply = recv_exact(s, 20)
    c, o = struct.unpack(">ii", reply[:8])
    return (c, o) == (customer, order)


def direct_probe(port, customer, first, stop):
    """Sends a write to one server every PROBE_EVERY, each on a connection
    and a thread of its own (so one that hangs on a dead primary does not
    delay the next), at most MAX_IN_FLIGHT at once."""
    order = 0
    in_flight = threading.Semaphore(MAX_IN_FLIGHT)

    def one(order, sent):
        try:
            if v1_write(port, customer, order, DIRECT_TIMEOUT):
                first.record(sent, time.monotonic())
        except OSError:
            pass
        finally:
            in_flight.release()

    while not stop.is_set():
        sent = time.monotonic()
        order += 1
        if in_flight.acquire(blocking=False):
            threading.Thread(target=one, args=(order, sent), daemon=True).start()
        pause = PROBE_EVERY - (time.monotonic() - sent)
        if pause > 0:
            time.sleep(pause)
    # Let the probes in flight end before the cluster goes.
    for _ in range(MAX_IN_FLIGHT):
        in_flight.acquire(timeout=DIRECT_TIMEOUT + 1)


def cluster_probe(addresses, customer, first, stop, deadline):
    """Writes through one cluster client every PROBE_EVERY."""
    order = 0
    client = None
    while not stop.is_set():
        sent = time.monotonic()
        order += 1
        try:
            if client is None:
                client = factory.Cluster(addresses, deadline=deadline)
            client.order(customer, order)
            first.record(sent, time.monotonic())
        except factory.FactoryError:
            pass
        pause = PROBE_EVERY - (time.monotonic() - sent)
        if pause > 0:
            time.sleep(pause)
    if client is not None:
        client.close()


def status_watch(ports, victim, old_epoch, first, stop):
    while not stop.is_set():
        asked = time.monotonic()
        for i, p in enumerate(ports):
            if i == victim:
                continue
            v = status(p, timeout=0.2)
            if v and v[0] == "primary" and v[1] > old_epoch:
                first.record(asked, time.monotonic())
        time.sleep(STATUS_EVERY)


def one_run(args, kind, run):
    cluster = Cluster(args.server, proxied=(kind == "blackhole"))
    stop = threading.Event()
    threads = []
    try:
        victim, epoch = cluster.wait_primary()
        survivors = [i for i in range(cluster.n) if i != victim]
        measures = {"status": First(), "direct": First(), "cluster": First()}
        base = 1000 * (run + 1)
        for k, i in enumerate(survivors):
            threads.append(threading.Thread(
                target=direct_probe, args=(cluster.client_port(i), base + k, measures["direct"], stop)))
        threads.append(threading.Thread(
            target=cluster_probe, args=(cluster.addresses(), base + 9, measures["cluster"], stop, args.cluster_deadline)))
        threads.append(threading.Thread(
            target=status_watch, args=(cluster.ports, victim, epoch, measures["status"], stop)))
        for t in threads:
            t.start()
        # Writes flow before the fault: both probes have been acknowledged.
        end = time.monotonic() + START_LIMIT
        while (measures["direct"].acks < 5 or measures["cluster"].acks < 5) and time.monotonic() < end:
            time.sleep(0.01)
        if measures["cluster"].acks < 5:
            raise RuntimeError("the cluster client's writes did not flow before the fault")
        fault_at = time.monotonic()
        for m in measures.values():
            with m.lock:
                m.fault_at = fault_at
        cluster.fault(kind, victim)
        end = fault_at + FAILOVER_LIMIT
        while any(m.first is None for m in measures.values()) and time.monotonic() < end:
            time.sleep(0.005)
        result = {k: (None if m.first is None else m.first - fault_at) for k, m in measures.items()}
        if any(v is None for v in result.values()):
            print("  run %d: no failover within %.0f s; survivors' logs:" % (run + 1, FAILOVER_LIMIT))
            for i in survivors:
                print("\n".join("    " + line for line in cluster.log(i).splitlines()[-15:]))
        return result
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        cluster.close()


def fmt(v):
    return "  none " if v is None else "%6.0f" % (v * 1000)


def failover(args):
    kinds = ["kill", "stop", "blackhole"] if args.fault == "all" else [args.fault]
    names = {"kill": "SIGKILL", "stop": "SIGSTOP", "blackhole": "blackhole cut"}
    summary = []
    for kind in kinds:
        print("%s of the primary, %d runs (ms from the fault: status, direct, cluster):"
              % (names[kind], args.runs))
        results = []
        for run in range(args.runs):
            r = one_run(args, kind, run)
            results.append(r)
            print("  run %2d: %s %s %s" % (run + 1, fmt(r["status"]), fmt(r["direct"]), fmt(r["cluster"])),
                  flush=True)
        summary.append((names[kind], results))
    print()
    print("%-14s %-8s %8s %8s %7s" % ("fault", "measure", "median", "max", "missed"))
    for name, results in summary:
        for measure in ("status", "direct", "cluster"):
            got = [r[measure] for r in results if r[measure] is not None]
            missed = len(results) - len(got)
            if got:
                print("%-14s %-8s %6.0f ms %6.0f ms %7d" % (
                    name, measure, statistics.median(got) * 1000, max(got) * 1000, missed))
            else:
                print("%-14s %-8s %8s %8s %7d" % (name, measure, "-", "-", missed))


def g8(args):
    cluster = Cluster(args.server, proxied=False)
    stop = threading.Event()
    epochs = []
    acks = [0] * args.writers
    failed = [0] * args.writers

    def writer(w):
        client = factory.Cluster(cluster.addresses(), deadline=10.0)
        order = 0
        while not stop.is_set():
            order += 1
            try:
                client.order(50_000 + w, order)
                acks[w] += 1
            except factory.FactoryError:
                failed[w] += 1
        client.close()

    def watch():
        while not stop.is_set():
            for p in cluster.ports:
                v = status(p)
                if v and v[1] and (not epochs or epochs[-1] != v[1]) and v[1] not in epochs:
                    epochs.append(v[1])
            time.sleep(0.05)

    try:
        first, epoch = cluster.wait_primary()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
        threads.append(threading.Thread(target=watch))
        for t in threads:
            t.start()
        time.sleep(args.seconds)  # the measurement's length
        stop.set()
        for t in threads:
            t.join(timeout=30)
        end = settled_primary(cluster.ports)
    finally:
        stop.set()
        cluster.close()
    changes = len([e for e in epochs if e != epoch])
    print("G8: %d s, %d writers through the cluster client, 3 servers, no faults" % (args.seconds, args.writers))
    print("first primary: server %d in epoch %#x; at the end: %s" % (first, epoch, end))
    print("epochs seen: %s" % ", ".join("%#x" % e for e in epochs))
    print("writes acknowledged: %d (%.0f/s), failed: %d" % (
        sum(acks), sum(acks) / args.seconds, sum(failed)))
    print("epoch changes: %d" % changes)
    return 0 if changes == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per fault kind (default 20)")
    ap.add_argument("--fault", choices=["kill", "stop", "blackhole", "all"], default="all")
    ap.add_argument("--g8", action="store_true", help="no faults: count epoch changes under load")
    ap.add_argument("--seconds", type=int, default=60, help="with --g8: length (default 60)")
    ap.add_argument("--writers", type=int, default=8, help="with --g8: writers (default 8)")
    ap.add_argument("--cluster-deadline", type=float, default=2.0,
                    help="the cluster client's deadline per write, seconds; each attempt on one "
                         "server waits at most this long too (default 2)")
    ap.add_argument("--server", default=SERVER, help="the server binary (default target/release/server)")
    args = ap.parse_args()
    if not os.path.exists(args.server):
        sys.exit("%s not found: run `make` first" % args.server)
    if args.g8:
        sys.exit(g8(args))
    failover(args)


if __name__ == "__main__":
    main()
