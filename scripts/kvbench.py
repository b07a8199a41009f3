#!/usr/bin/env python3
"""Protocol v2 benchmark (issue 15, "Measure and report"): factory's string
keys and values beside Redis, in one interleaved run, through one client.

    scripts/kvbench.py [grid] [--reps N] [--sizes 1,3] [--values 16,1024,65536]
                       [--connections 8,128] [--depths 1,32] [--ops write,read]
                       [--duration SECS]
    scripts/kvbench.py fsync [--reps N] [--etcd [ETCD]]
    scripts/kvbench.py memory [--keys N] [--values 16,100]

grid: for each repetition and cluster size (1 and 3 servers), a fresh
factory cluster (`server ... --bind 127.0.0.1`, in memory) and a fresh Redis
primary with size - 1 replicas (`--save "" --appendonly no`, ready when INFO
replication shows every replica online) run side by side. For each value
size, both are first loaded with every key (untimed: `client kv load
--requests KEYS --depth 64`), then every cell runs on each, the order of the
two alternating from cell to cell and from repetition to repetition:
writes (put; SET, with `WAIT size-1 0` for 3 servers) and reads (get; GET)
at 8 and 128 connections and pipeline depth 1 and 32, for --duration
seconds each. Both stores are driven by the same `client kv load` (with
--resp for Redis), so the client's cost is the same on both sides. A batch
of DEPTH requests goes out in one write and every answer is read before the
next batch (redis-benchmark -P's shape); with WAIT, the batch's SETs are
followed by one `WAIT 2 0`, and each SET counts as acknowledged, and its
latency ends, only when that WAIT answers 2 or more: the same promise our
put makes (on every in-sync server before the answer), given to a batch at
once rather than to each request. Keys: KEYS = min(10,000, 64 MiB / value
size), so that 64 KiB values hold 64 MiB per server. Also, per
repetition, the v1 echo floor (examples/echo_floor: 8 connections, one
12-byte request in flight each, answered at once by a thread per
connection), for the target "pipelined 1-server writes >= 3x the echo floor".

fsync: ours with `--data-dir DIR --fsync always` (DIR under target/, on
disk), 1 and 3 servers, 8 connections, depth 1, 16-byte puts, for
--duration seconds; with --etcd, beside etcd (3.4's `etcd` binary, 1 and 3
members on loopback, data under target/), driven by `client kv load
--etcd` (8 closed-loop writers over the v3 JSON gateway), and with
--etcd-client BINARY also by etcd's own Go client (scripts/kvbench_etcd.go,
8 writers, every member as an endpoint). Building that client needs no
module download: `apt-get install etcd-server golang-go
golang-etcd-server-dev`, then `GO111MODULE=off GOPATH=/usr/share/gocode
go build -o /tmp/kvbench_etcd main.go` in a folder holding a copy of
scripts/kvbench_etcd.go as main.go (Debian's etcd 3.4 sources and their
dependencies are under /usr/share/gocode).

memory: for each value size, 1,000,000 keys (--keys) written into one fresh
server and one fresh redis-server: our VmRSS after minus before, per key,
beside Redis's INFO memory used_memory after minus before, per key (and
its RSS, which includes the allocator's slack). Then, with
`--data-dir --fsync never` (the load is not what is timed), the restart
time of a data directory holding the keys (SIGTERM, start again, until the
first get answers), and the catch-up of a backup that missed them: a
second server with an empty data directory joins a primary that holds
them; the time from its start until `client --status` shows it in the
primary's in-sync set, and the rate in MB of keys and values per second.

Every process started here is killed by its PID when its run ends, and on
errors or Ctrl-C; every wait is bounded. Python 3 standard library only;
reuses scripts/loadbench.py's process and cluster helpers. Run under
`flock /work/wt/bench.lock` on a shared machine; `make kvbench` builds what
it needs and runs the grid.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadbench as lb  # noqa: E402  (after the path is set)

ROOT = lb.ROOT
RELEASE = lb.RELEASE
RUN_TIMEOUT = 300.0
PRELOAD_DEPTH = 64
KEYS_BYTES = 64 << 20
MAX_KEYS = 10_000
ECHO_REQUESTS = 20_000  # per connection, 8 connections (loadbench's write workload)


def keys_for(value_size):
    return max(1, min(MAX_KEYS, KEYS_BYTES // max(1, value_size)))


def kv_load(procs, bins, server, args, resp=None, allow_failed=False):
    """Runs `client kv load server ARGS --json`; the report, or BenchError
    (also when a request failed, unless allow_failed)."""
    argv = [bins["client"], "kv", "load", server, "--json", "--percentiles"] + args
    if resp is not None:
        argv += ["--resp"] + (["--wait", str(resp)] if resp > 0 else [])
    code, out, err = procs.run_status(argv, timeout=RUN_TIMEOUT)
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise lb.BenchError(f"{' '.join(argv)} exited {code}: {err.strip()[-500:]}")
    if allow_failed and report.get("requests", 0) > 0:
        return report
    if code != 0 or report.get("failed", 0) > 0:
        raise lb.BenchError(
            f"{' '.join(argv)} exited {code}, {report.get('failed')} failed: "
            f"{report.get('first_error', err.strip()[-300:])}"
        )
    return report


# --- grid --------------------------------------------------------------------


class Cell:
    def __init__(self, size, value, op, connections, depth):
        self.size, self.value, self.op = size, value, op
        self.connections, self.depth = connections, depth
        self.results = {"ours": [], "redis": []}  # [ops/s, p50, p99, max]
        self.failed = {"ours": 0, "redis": 0}  # requests failed, all reps
        self.first_error = {}

    def label(self):
        return f"{self.size} srv {self.op:<5} {self.value:>6} B {self.connections:>4} conn depth {self.depth:>2}"


def grid_cells(args):
    cells = []
    for size in args.sizes:
        for value in args.values:
            for op in args.ops:
                for conns in args.connections:
                    for depth in args.depths:
                        cells.append(Cell(size, value, op, conns, depth))
    return cells


def cell_args(cell, duration):
    keys = keys_for(cell.value)
    return [
        "--keys", str(keys), "--value-size", str(cell.value),
        "--connections", str(cell.connections), "--depth", str(cell.depth),
        "--reads", "100" if cell.op == "read" else "0",
        "--duration", str(duration),
    ]


def preload(procs, bins, server, value, resp):
    keys = keys_for(value)
    kv_load(procs, bins, server, [
        "--keys", str(keys), "--requests", str(keys), "--value-size", str(value),
        "--depth", str(PRELOAD_DEPTH), "--connections", "8",
    ], resp)


def echo_floor(procs, bins, workdir):
    cluster = lb.Cluster(procs, workdir)
    try:
        cluster.start_echo(bins["echo"])
        argv = [bins["echo"], "client", "127.0.0.1", str(cluster.port), "8",
                str(ECHO_REQUESTS), "--percentiles"]
        out = procs.run(argv, timeout=RUN_TIMEOUT)
        return lb.parse_stats(out, with_max=True)
    finally:
        cluster.stop()


def run_grid(args, bins, procs):
    cells = grid_cells(args)
    echo = []
    turn = 0
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="kvbench-") as workdir:
            if 1 in args.sizes and "write" in args.ops:
                echo.append(echo_floor(procs, bins, workdir))
                print(f"rep {rep + 1}: echo floor {echo[-1][0]:.0f} ops/s", file=sys.stderr)
            for size in args.sizes:
                ours = lb.Cluster(procs, workdir)
                redis = lb.Cluster(procs, workdir)
                try:
                    ours.start_factory(bins["server"], size)
                    redis.start_redis(bins["redis"], size)
                    wait = size - 1
                    servers = {"ours": (f"127.0.0.1:{ours.port}", None),
                               "redis": (f"127.0.0.1:{redis.port}", wait)}
                    for value in args.values:
                        for name, (server, resp) in servers.items():
                            preload(procs, bins, server, value, resp)
                        for cell in cells:
                            if cell.size != size or cell.value != value:
                                continue
                            order = ["ours", "redis"] if turn % 2 == 0 else ["redis", "ours"]
                            turn += 1
                            for name in order:
                                server, resp = servers[name]
                                if cell.op == "read" and resp is not None:
                                    resp = 0  # GET needs no WAIT
                                r = kv_load(procs, bins, server, cell_args(cell, args.duration),
                                            resp, allow_failed=True)
                                cell.results[name].append(
                                    [r["throughput_ops"], r["p50_us"], r["p99_us"], r["max_us"]])
                                if r["failed"]:
                                    cell.failed[name] += r["failed"]
                                    cell.first_error.setdefault(name, r.get("first_error"))
                                    keep_logs(workdir, cell, name, rep)
                            print(f"rep {rep + 1}: {cell.label()}: ours "
                                  f"{cell.results['ours'][-1][0]:.0f}, redis "
                                  f"{cell.results['redis'][-1][0]:.0f} ops/s", file=sys.stderr)
                finally:
                    ours.stop()
                    redis.stop()
                turn += 1  # the next size starts with the other system
    return cells, echo


def keep_logs(workdir, cell, name, rep):
    """The server logs of a cell with failed requests, kept for a look."""
    dest = os.path.join(ROOT, "target", "kvbench-failed",
                        f"rep{rep + 1}-{cell.size}srv-{cell.op}-{cell.value}-"
                        f"{cell.connections}c-d{cell.depth}-{name}")
    shutil.copytree(workdir, dest, dirs_exist_ok=True)
    print(f"kvbench: {name}: {cell.label()}: failed requests; logs in {dest}", file=sys.stderr)


def med(values, i):
    return statistics.median(v[i] for v in values)


def print_grid(cells, echo):
    if echo:
        e = [statistics.median(x[i] for x in echo) for i in range(5)]
        print(f"v1 echo floor (8 connections, depth 1): {e[0]:.0f} ops/s, p50 {e[2]:.0f} us, "
              f"p99 {e[3]:.0f} us, max {e[4]:.0f} us ({len(echo)} reps)")
        print()
    print(f"{'servers':>7} {'op':<5} {'value':>6} {'conn':>4} {'depth':>5} |"
          f" {'ours ops/s':>10} {'p50':>7} {'p99':>7} {'max':>8} |"
          f" {'redis ops/s':>11} {'p50':>7} {'p99':>7} {'max':>8} | {'ours/redis':>10}"
          f" {'failed':>6}")
    for c in cells:
        o, r = c.results["ours"], c.results["redis"]
        if not o or not r:
            continue
        ratio = med(o, 0) / med(r, 0) if med(r, 0) else float("inf")
        print(f"{c.size:>7} {c.op:<5} {c.value:>6} {c.connections:>4} {c.depth:>5} |"
              f" {med(o, 0):>10.0f} {med(o, 1):>7.0f} {med(o, 2):>7.0f} {med(o, 3):>8.0f} |"
              f" {med(r, 0):>11.0f} {med(r, 1):>7.0f} {med(r, 2):>7.0f} {med(r, 3):>8.0f} |"
              f" {ratio:>10.2f} {c.failed['ours']:>3}/{c.failed['redis']:<3}")
    for c in cells:
        for name, why in c.first_error.items():
            print(f"failed: {name} {c.label()}: {c.failed[name]} requests; first: {why}")
    print("failed: requests that failed over all repetitions, ours/redis")
    print("latencies in us (p50, p99: medians over repetitions; max: median of each run's max)")
    if echo:
        floor = statistics.median(x[0] for x in echo)
        rows = [c for c in cells if c.size == 1 and c.op == "write" and c.depth > 1 and c.results["ours"]]
        for c in rows:
            print(f"target: 1-server pipelined writes >= 3x echo floor: {c.value} B, "
                  f"{c.connections} conn, depth {c.depth}: {med(c.results['ours'], 0) / floor:.2f}x")


# --- fsync: ours beside etcd --------------------------------------------------


ETCD_READY_TIMEOUT = 20.0


def http_post(port, path, body, timeout=lb.PROBE_TIMEOUT):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


class EtcdCluster:
    """size etcd members on loopback ports, data under base; ready when one
    member reports a leader and a put through the gateway succeeds."""

    def __init__(self, procs, binary, size, base, workdir):
        self.procs, self.servers = procs, []
        clients = [lb.free_port() for _ in range(size)]
        peers = [lb.free_port() for _ in range(size)]
        initial = ",".join(f"e{i}=http://127.0.0.1:{peers[i]}" for i in range(size))
        for i in range(size):
            argv = [
                binary, "--name", f"e{i}", "--data-dir", os.path.join(base, f"etcd{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{clients[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{clients[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "kvbench", "--log-level", "warn",
            ]
            log_path = os.path.join(workdir, f"etcd{i}.log")
            with open(log_path, "w") as log:
                proc = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
            self.servers.append((proc, log_path))
        self.ports = clients
        self.port = self.leader()

    def leader(self):
        """The client port of the member that leads (writes go there, as
        etcd's benchmark tool sends them to the leader's endpoint)."""
        deadline = time.monotonic() + ETCD_READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            for proc, log_path in self.servers:
                if proc.poll() is not None:
                    raise lb.BenchError(f"etcd exited {proc.returncode}: {lb.read_log(log_path)}")
            for port in self.ports:
                try:
                    st = http_post(port, "/v3/maintenance/status", "{}")
                    if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                        http_post(port, "/v3/kv/put", '{"key":"cmVhZHk=","value":"eQ=="}')
                        return port
                except (OSError, ValueError, KeyError) as e:
                    last = str(e)
            time.sleep(0.1)
        raise lb.BenchError(f"etcd: no leader within {ETCD_READY_TIMEOUT:.0f} s ({last})")

    def stop(self):
        for proc, _ in self.servers:
            self.procs.stop(proc)
        self.servers = []


class FsyncResult:
    def __init__(self, args):
        self.args = args
        self.rows = {}  # (system, size, depth) -> [[ops, p50, p99, max]]

    def add(self, key, r):
        self.rows.setdefault(key, []).append(
            [r["throughput_ops"], r["p50_us"], r["p99_us"], r["max_us"]])

    def print(self):
        print(f"--data-dir --fsync always, 8 connections, 16-byte puts, {self.args.duration} s "
              f"per run; data under {self.args.data_base}")
        print(f"{'system':<8} {'servers':>7} {'depth':>5} | {'ops/s':>8} {'p50':>7} {'p99':>7} {'max':>8}")
        for (system, size, depth), v in sorted(self.rows.items()):
            print(f"{system:<8} {size:>7} {depth:>5} | {med(v, 0):>8.0f} {med(v, 1):>7.0f}"
                  f" {med(v, 2):>7.0f} {med(v, 3):>8.0f}")
        for size in self.args.sizes:
            ours = self.rows.get(("ours", size, 1))
            etcd = self.rows.get(("etcd", size, 1))
            if ours and etcd:
                print(f"ours / etcd (gateway), {size} servers, depth 1: "
                      f"{med(ours, 0) / med(etcd, 0):.2f}")
            go = self.rows.get(("etcd-go", size, 1))
            if ours and go:
                print(f"ours / etcd (its Go client), {size} servers, depth 1: "
                      f"{med(ours, 0) / med(go, 0):.2f}")
            if ours and size == 3:
                print(f"ours / 3,490 (the issue's etcd anchor, its Go client), 3 servers, depth 1: "
                      f"{med(ours, 0) / 3490:.2f}")


def go_client(procs, bins, cluster, args, result, size):
    """etcd's own Go client (scripts/kvbench_etcd.go), 8 writers, depth 1,
    every member as an endpoint (as etcd's benchmark tool is given them)."""
    endpoints = ",".join(f"127.0.0.1:{p}" for p in cluster.ports)
    argv = [bins["etcd_client"], "-endpoints", endpoints, "-clients", "8",
            "-duration", f"{args.duration}s", "-value-size", "16"]
    code, out, err = procs.run_status(argv, timeout=RUN_TIMEOUT)
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise lb.BenchError(f"{' '.join(argv)} exited {code}: {err.strip()[-300:]}")
    if code != 0 or r["failed"]:
        raise lb.BenchError(f"{' '.join(argv)}: {r['failed']} failed")
    result.add(("etcd-go", size, 1), r)
    print(f"etcd-go {size} servers depth 1: {r['throughput_ops']:.0f} puts/s", file=sys.stderr)


def run_fsync(args, bins, procs):
    result = FsyncResult(args)
    load = ["--keys", "10000", "--value-size", "16", "--connections", "8",
            "--duration", str(args.duration)]
    turn = 0
    for _rep in range(args.reps):
        for size in args.sizes:
            systems = ["ours", "etcd"] if "etcd" in bins else ["ours"]
            if turn % 2:
                systems.reverse()
            turn += 1
            for system in systems:
                with tempfile.TemporaryDirectory(prefix="kvbench-", dir=args.data_base) as base, \
                        tempfile.TemporaryDirectory(prefix="kvbench-log-") as workdir:
                    if system == "ours":
                        cluster = lb.Cluster(procs, workdir)
                        start = lambda: cluster.start_factory(bins["server"], size, data_dir=base)
                    else:
                        cluster = None
                    try:
                        if system == "ours":
                            start()
                            flag = []
                        else:
                            cluster = EtcdCluster(procs, bins["etcd"], size, base, workdir)
                            flag = ["--etcd"]
                            if "etcd_client" in bins:
                                go_client(procs, bins, cluster, args, result, size)
                        server = f"127.0.0.1:{cluster.port}"
                        for depth in args.depths:
                            argv = [bins["client"], "kv", "load", server, "--json",
                                    "--percentiles", "--depth", str(depth)] + load + flag
                            code, out, err = procs.run_status(argv, timeout=RUN_TIMEOUT)
                            r = json.loads(out.strip().splitlines()[-1])
                            if code != 0 or r["failed"]:
                                raise lb.BenchError(f"{' '.join(argv)}: {r.get('first_error', err)}")
                            result.add((system, size, depth), r)
                            print(f"{system} {size} servers depth {depth}: "
                                  f"{r['throughput_ops']:.0f} puts/s", file=sys.stderr)
                    finally:
                        if cluster:
                            cluster.stop()
    return result


# --- memory, restart, catch-up -------------------------------------------------


def rss_kib(proc):
    v = lb.vm_rss_kib(proc.pid)
    if v is None:
        raise lb.BenchError(f"no VmRSS for pid {proc.pid}")
    return v


def redis_info(port, field):
    info = lb.redis_command(port, "INFO", "memory").decode()
    for line in info.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise lb.BenchError(f"redis INFO memory has no {field}")


def v2_get(port, key, timeout=0.5):
    """One v2 get (docs/protocol.md §9) on a fresh connection: the status
    byte of the answer, or None when nothing answered."""
    import socket
    import struct
    body = struct.pack(">QBH", 1, 1, len(key)) + key
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"FKV\0\0\0\0\x02" + struct.pack(">I", len(body)) + body)
            head = b""
            while len(head) < 14:
                chunk = s.recv(14 - len(head))
                if not chunk:
                    return None
                head += chunk
            return head[13]
    except OSError:
        return None


def settle(proc, seconds=1.0):
    """VmRSS once it stopped changing for a while (frees and the last
    commits land), bounded."""
    last = rss_kib(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = rss_kib(proc)
        if abs(now - last) < 256:
            return now
        last = now
    return last


class MemoryResult:
    def __init__(self, args):
        self.args, self.lines = args, []

    def print(self):
        for line in self.lines:
            print(line)


def load_keys(procs, bins, port, keys, value, resp=None):
    return kv_load(procs, bins, f"127.0.0.1:{port}", [
        "--keys", str(keys), "--requests", str(keys), "--value-size", str(value),
        "--depth", "64", "--connections", "8"], resp)


def wait_writable(bins, port, timeout=20.0):
    """Until one put through port succeeds (a primary is elected), bounded."""
    argv = [bins["client"], "kv", "load", f"127.0.0.1:{port}", "--keys", "1",
            "--requests", "1", "--timeout", "5"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(argv, capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.05)
    raise lb.BenchError(f"no put succeeded through port {port} within {timeout:.0f} s")


def status_in_sync(bins, ports, member):
    """True when the server whose status says primary lists member in its
    in-sync set (`client --status --json`)."""
    listing = ",".join(f"127.0.0.1:{p}" for p in ports)
    out = lb.command_output([bins["client"], "--status", listing, "--json"]) or ""
    try:
        st = json.loads(out)
    except ValueError:
        return False
    return any(s.get("role") == "primary" and member in (s.get("in_sync") or [])
               for s in st.get("servers", []))


def run_memory(args, bins, procs):
    result = MemoryResult(args)
    n = args.keys
    say = result.lines.append
    say(f"{n:,} keys key0000000000..: RSS and used_memory deltas per key (after loading minus before)")
    for value in args.values:
        with tempfile.TemporaryDirectory(prefix="kvbench-log-") as workdir:
            for extra in ([], ["--log-retain", "1000"]):
                ours = lb.Cluster(procs, workdir)
                try:
                    ours.start_factory(bins["server"], 1)
                    if extra:
                        procs.stop(ours.servers[0][0])
                        ours.servers = []
                        ours._start([bins["server"], str(ours.port), "0", "0", "--bind",
                                     "127.0.0.1"] + extra, "server-r")
                    proc = ours.servers[0][0]
                    before = settle(proc, 0.3)
                    load_keys(procs, bins, ours.port, n, value)
                    after = settle(proc)
                    say(f"ours {value:>3} B{' ' + ' '.join(extra) if extra else ''}: VmRSS "
                        f"{before} -> {after} KiB: {(after - before) * 1024 / n:.1f} B/key")
                finally:
                    ours.stop()
            redis = lb.Cluster(procs, workdir)
            try:
                redis.start_redis(bins["redis"], 1)
                proc = redis.servers[0][0]
                used0, rss0 = redis_info(redis.port, "used_memory"), rss_kib(proc)
                load_keys(procs, bins, redis.port, n, value, resp=0)
                used1, rss1 = redis_info(redis.port, "used_memory"), rss_kib(proc)
                say(f"redis {value:>3} B: used_memory {used0} -> {used1}: "
                    f"{(used1 - used0) / n:.1f} B/key; VmRSS {rss0} -> {rss1} KiB: "
                    f"{(rss1 - rss0) * 1024 / n:.1f} B/key")
            finally:
                redis.stop()
        restart_and_catch_up(args, bins, procs, value, say)
    return result


def restart_and_catch_up(args, bins, procs, value, say):
    n = args.keys
    megabytes = n * (13 + value) / 1e6
    with tempfile.TemporaryDirectory(prefix="kvbench-", dir=args.data_base) as base, \
            tempfile.TemporaryDirectory(prefix="kvbench-log-") as workdir:
        # Restart: a lone server's data directory holding the keys.
        port = lb.free_port()
        argv = [bins["server"], str(port), "0", "0", "--bind", "127.0.0.1",
                "--data-dir", os.path.join(base, "lone"), "--fsync", "never"]
        lone = lb.Cluster(procs, workdir)
        lone._start(argv, "lone")
        load_keys(procs, bins, port, n, value)
        procs.stop(lone.servers[0][0])  # SIGTERM: flushes, then exits
        lone.servers = []
        size = sum(os.path.getsize(os.path.join(dp, f))
                   for dp, _, fs in os.walk(os.path.join(base, "lone")) for f in fs)
        t0 = time.monotonic()
        proc = procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        status = None
        deadline = t0 + 60
        while time.monotonic() < deadline:
            status = v2_get(port, b"key0000000001")
            if status == 0:
                break
            if proc.poll() is not None:
                raise lb.BenchError("restarted server exited")
            time.sleep(0.002)
        took = time.monotonic() - t0
        procs.stop(proc)
        if status != 0:
            raise lb.BenchError(f"restarted server did not serve a get within 60 s ({status})")
        say(f"restart {value:>3} B: data directory {size / 1e6:.1f} MB; start to first get "
            f"answered ok: {took * 1000:.0f} ms")

        # Catch-up: three servers; the third is killed, its data directory
        # removed, the keys written to the other two (a majority), and it
        # is started again with the empty directory.
        ports = [lb.free_port() for _ in range(3)]
        cluster = lb.Cluster(procs, workdir)

        def member(i):
            return lb.cluster_argv(bins["server"], ports, i) + [
                "--bind", "127.0.0.1", "--data-dir", os.path.join(base, f"m{i}"),
                "--fsync", "never"]
        try:
            for i in range(3):
                cluster._start(member(i), f"m{i}")
            wait_writable(bins, ports[0])
            third = cluster.servers.pop()[0]
            third.kill()
            third.wait(timeout=lb.KILL_TIMEOUT)
            shutil.rmtree(os.path.join(base, "m2"))
            wait_writable(bins, ports[0])
            load_keys(procs, bins, ports[0], n, value)
            t0 = time.monotonic()
            cluster._start(member(2), "m2")
            deadline = t0 + 120
            while time.monotonic() < deadline and not status_in_sync(bins, ports[:2], 2):
                time.sleep(0.01)
            took = time.monotonic() - t0
            if not status_in_sync(bins, ports[:2], 2):
                raise lb.BenchError("backup not in sync within 120 s")
            say(f"catch-up {value:>3} B: backup start to in sync (client --status): "
                f"{took * 1000:.0f} ms for {megabytes:.1f} MB of keys and values: "
                f"{megabytes / took:.1f} MB/s")
        finally:
            cluster.stop()


# --- main --------------------------------------------------------------------


def int_list(text):
    return [int(x) for x in text.split(",") if x]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="grid", choices=["grid", "fsync", "memory"])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sizes", type=int_list, default=[1, 3])
    p.add_argument("--values", type=int_list, default=None,
                   help="value sizes (grid: 16,1024,65536; memory: 16,100)")
    p.add_argument("--connections", type=int_list, default=[8, 128])
    p.add_argument("--depths", type=int_list, default=None,
                   help="pipeline depths (grid: 1,32; fsync: 1)")
    p.add_argument("--ops", type=lambda t: t.split(","), default=["write", "read"])
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per cell (default 1; fsync: 3)")
    p.add_argument("--keys", type=int, default=1_000_000, help="memory: keys (default 1,000,000)")
    p.add_argument("--etcd", nargs="?", const="etcd", metavar="ETCD",
                   help="fsync: etcd beside ours (default binary: etcd on PATH)")
    p.add_argument("--etcd-client", metavar="BINARY",
                   help="fsync: also drive etcd with this build of scripts/kvbench_etcd.go "
                   "(etcd's own Go client; rows etcd-go)")
    p.add_argument("--data-base", default=os.path.join(ROOT, "target"),
                   help="where data directories go (default target/, on disk)")
    p.add_argument("--server", default=os.path.join(RELEASE, "server"))
    p.add_argument("--client", default=os.path.join(RELEASE, "client"))
    p.add_argument("--echo", default=os.path.join(RELEASE, "examples", "echo_floor"))
    p.add_argument("--redis", default="redis-server", help="redis-server binary")
    args = p.parse_args()
    if args.duration is None:
        args.duration = 3.0 if args.mode == "fsync" else 1.0
    if args.depths is None:
        args.depths = [1] if args.mode == "fsync" else [1, 32]
    if args.values is None:
        args.values = [16, 100] if args.mode == "memory" else [16, 1024, 65536]
    return args


def main():
    args = parse_args()
    bins = {"server": args.server, "client": args.client, "echo": args.echo}
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"kvbench: {name} binary {path} not found; run `make kvbench`")
    if args.mode in ("grid", "memory"):
        path = shutil.which(args.redis)
        if not path:
            sys.exit(f"kvbench: {args.redis} not found (apt-get install redis-server)")
        bins["redis"] = path
    if args.etcd:
        path = shutil.which(args.etcd)
        if not path:
            sys.exit(f"kvbench: --etcd: {args.etcd} not found (apt-get install etcd-server)")
        bins["etcd"] = path
    if args.etcd_client:
        if not os.access(args.etcd_client, os.X_OK):
            sys.exit(f"kvbench: --etcd-client {args.etcd_client} is not executable")
        bins["etcd_client"] = args.etcd_client
    procs = lb.Processes(False)
    signal.signal(signal.SIGTERM, lb.on_sigterm)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        if args.mode == "grid":
            cells, echo = run_grid(args, bins, procs)
        elif args.mode == "fsync":
            result = run_fsync(args, bins, procs)
        else:
            result = run_memory(args, bins, procs)
    except lb.BenchError as e:
        sys.exit(f"kvbench: {e}")
    except KeyboardInterrupt:
        sys.exit("kvbench: interrupted")
    finally:
        procs.stop_all()
    print(f"kvbench {args.mode}: {lb.git_revision()}, started {started}, {args.reps} reps, "
          f"{os.cpu_count()} CPUs; redis {lb.redis_version(bins.get('redis', 'redis-server'))}")
    print(f"command: {' '.join(sys.argv)}")
    print()
    if args.mode == "grid":
        print_grid(cells, echo)
    else:
        result.print()


if __name__ == "__main__":
    main()
