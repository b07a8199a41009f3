#!/usr/bin/env python3
"""Load benchmark: release servers in clusters of 1, 2 and 3, driven by the
release client, beside the echo floor, in one interleaved run; optionally
beside the original C++ servers and a Redis primary with replicas.

    scripts/loadbench.py [--reps N] [--pin] [--data-dir [BASE]]
                         [--original DIR] [--redis [REDIS_SERVER]]

Workloads (each row's configuration gets a fresh cluster every repetition):

  write  8 customers x 20,000 orders  (client mode 1)
  read   128 customers x 200 reads    (client mode 2)

Rows per workload: the echo floor (benches/echo_floor.rs: a thread-per-
connection server that answers at once, and its own minimal client); the
factory client against that echo server (the client's own cost); clusters of
1, 2 and 3 servers; and with --data-dir, the same clusters with every server
given `--data-dir DIR --fsync always` (only if `server --help` offers it).

--original DIR adds "original N servers": clusters of the original C++
`server` found in DIR (never copied anywhere), with the same command line
minus --bind, driven by our client exactly like our rows (same warm-up, same
load); it has no persistence, so it has no fsync rows. Ready means its port
accepts a connection (it logs nothing to wait for).

--redis adds "redis N servers": a redis-server primary and N-1 replicas
(--replicaof) on loopback ports, with no persistence (--save "" --appendonly
no), ready when the primary's INFO replication shows every replica online.
They are driven by benches/resp_load.rs (the resp_load example) with the
same customers and requests: a write is `SET customer:<id> <n>` and
`WAIT N-1 0` pipelined, acknowledged once the replicas have it; a read is
`GET customer:<id>`. Redis rows run without persistence; with --data-dir,
further redis rows run `--appendonly yes --appendfsync always` in
directories under BASE, and are compared with our fsync rows.

With --original or --redis, a section after the table gives ours / theirs:
our ops/s divided by theirs for the same workload and cluster size, with
the goals of the fast-path issue where it sets one (3-server writes at least
4x the original; 1-server writes and reads at least on par; ahead of
Redis). Neither is needed unless its flag is given; a flag whose binary is
missing stops the script with status 2 before anything runs.

Repetitions are interleaved (every row once per repetition, in an order
rotated each time) and the table shows medians. --pin runs every process
under `taskset -c 0`, which on a 2-core machine removes the cross-CPU wakeup
cost and makes runs repeat within a few percent.

--sweep replaces the rows above with a connections sweep (issue 17's scale
benchmark): for writes and reads, for 1 and 3 servers, ours (and with
--original / --redis theirs, interleaved in the same run) at 8, 64, 512,
2,048 and 10,000 connections (--sweep-connections to choose), each
connection a thread of the load client making --sweep-total / connections
requests (at least 1; default 160,000 in all). Each row prints ops/s, p50,
p99 and max latency, failed requests (our client's --json count; a redis
run that fails counts as "run failed"), the most VmRSS each server reached
(/proc/PID/status, sampled every 50 ms while the client runs; ours and the
original per server, primary first) and the kernel's listen-queue overflows
during the row (TcpExt ListenOverflows in /proc/net/netstat, before and
after the client; system-wide, so keep the machine quiet). /64: ops/s
over the 64-connection row of the same system, workload and size. The
script raises its own open-file soft limit to the hard limit (inherited by
everything it starts); 10,000 connections need a hard limit above 20,000
for our server (two descriptors per connection) and above 10,000 for the
client.

Every process started here is killed by its PID when its run ends, and on
errors or Ctrl-C; every wait is bounded. Python 3 standard library only.

Build what it runs with `make loadbench`, or for --redis also
`cargo build --release --example resp_load`.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

try:
    import resource
except ImportError:  # not on every platform; the limit is then left alone
    resource = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")

WORKLOADS = {
    # name: (customers, requests per customer, client mode)
    "write": (8, 20_000, 1),
    "read": (128, 200, 2),
}
CLUSTER_SIZES = (1, 2, 3)

ELECTION_WAIT = 3.0  # how long a new cluster may take to elect a primary
READY_TIMEOUT = 10.0  # a server must log "listening on" (or accept) within this
REPLICA_TIMEOUT = 20.0  # redis replicas must all be online within this
PROBE_TIMEOUT = 1.0  # one readiness probe (connect, or one redis command)
RESP_MAX = 1 << 20  # the longest redis reply the script reads (INFO is ~1 KiB)
RUN_TIMEOUT = 300.0  # one client run
KILL_TIMEOUT = 5.0  # after SIGTERM, before SIGKILL
START_ATTEMPTS = 3  # a free port can be taken between probe and bind
SWEEP_CONNECTIONS = (8, 64, 512, 2048, 10_000)
SWEEP_SIZES = (1, 3)
SWEEP_TOTAL = 160_000  # requests per sweep row, split over its connections
SWEEP_SPARE_CONNECTIONS = 64  # the servers' connection limit above a row's clients
SAMPLE_EVERY = 0.05  # seconds between RSS samples during a sweep row


class BenchError(Exception):
    """A run that could not be completed; the message says which and why."""


# --- processes ---------------------------------------------------------------


class Processes:
    """Every process this script started, so that each can be killed by PID."""

    def __init__(self, pin):
        self.prefix = ["taskset", "-c", "0"] if pin else []
        self.live = []

    def spawn(self, argv, **kwargs):
        proc = subprocess.Popen(self.prefix + argv, **kwargs)
        self.live.append(proc)
        return proc

    def stop(self, proc):
        """SIGTERM, bounded wait, then SIGKILL and a bounded wait."""
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=KILL_TIMEOUT)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                proc.kill()  # by PID; a no-op if it has just exited
                proc.wait(timeout=KILL_TIMEOUT)
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self):
        for proc in list(self.live):
            try:
                self.stop(proc)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"loadbench: could not stop pid {proc.pid}: {e}", file=sys.stderr)

    def run_status(self, argv, timeout=RUN_TIMEOUT, during=None):
        """Runs a client to completion, calling during(proc) every 50 ms
        meanwhile; returns (exit status, stdout, stderr)."""
        proc = self.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        chunks = {"out": [], "err": []}
        readers = [
            threading.Thread(target=lambda f=f, k=k: chunks[k].append(f.read()), daemon=True)
            for f, k in ((proc.stdout, "out"), (proc.stderr, "err"))
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                self.stop(proc)
                raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f} s")
            if during:
                during()
            time.sleep(0.05)
        for reader in readers:
            reader.join(timeout=KILL_TIMEOUT)
        self.stop(proc)
        return proc.returncode, "".join(chunks["out"]), "".join(chunks["err"])

    def run(self, argv, timeout=RUN_TIMEOUT):
        """Runs a client to completion; returns its stdout."""
        proc = self.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f} s")
        self.stop(proc)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
        return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- servers -----------------------------------------------------------------


def cluster_argv(binary, ports, i):
    """Server i's command line (the original's shape): PORT ID NUM_PEERS,
    then ID IP PORT for each peer."""
    argv = [binary, str(ports[i]), str(i), str(len(ports) - 1)]
    for j, peer_port in enumerate(ports):
        if j != i:
            argv += [str(j), "127.0.0.1", str(peer_port)]
    return argv


class Cluster:
    """Servers (or the echo server) on loopback ports, logging to files."""

    def __init__(self, procs, workdir):
        self.procs = procs
        self.workdir = workdir
        self.servers = []  # (Popen, log path)
        self.port = None

    def start_factory(self, binary, size, data_dir=None, connections=None):
        ports = [free_port() for _ in range(size)]
        for i in range(size):
            argv = cluster_argv(binary, ports, i) + ["--bind", "127.0.0.1"]
            if connections is not None:
                # The default limit (4,096) would refuse a 10,000 row's clients.
                argv += ["--max-connections", str(connections + SWEEP_SPARE_CONNECTIONS)]
            if data_dir:
                argv += ["--data-dir", os.path.join(data_dir, f"s{i}"), "--fsync", "always"]
            self._start(argv, f"server{i}")
        self.port = ports[self.elected_primary(size)]

    def elected_primary(self, size):
        """The index of the server the election made primary, so that the
        load goes to it, as a cluster-aware client's would (a backup would
        forward every write: one more hop). Servers without an election
        (older builds, fewer than three servers) log none within the wait:
        then server 0, which the first write makes primary."""
        if size < 3:
            return 0
        deadline = time.monotonic() + ELECTION_WAIT
        while time.monotonic() < deadline:
            for i, (_, log_path) in enumerate(self.servers[-size:]):
                with open(log_path, errors="replace") as f:
                    if f"factory {i}: elected primary" in f.read():
                        return i
            time.sleep(0.02)
        return 0

    def start_original(self, binary, size):
        """The original C++ servers: our command line without --bind. They
        log nothing to wait for, so ready means the port accepts."""
        ports = [free_port() for _ in range(size)]
        for i, port in enumerate(ports):
            argv = cluster_argv(binary, ports, i)
            proc, log_path = self._spawn_logged(argv, f"original{i}")
            wait_accepting(proc, log_path, argv, port)
        self.port = ports[0]

    def start_redis(self, binary, size, data_dir=None, connections=None):
        """A primary and size - 1 replicas, without persistence, or with
        `--appendonly yes --appendfsync always` in data_dir."""
        ports = [free_port() for _ in range(size)]
        for i, port in enumerate(ports):
            directory = os.path.join(data_dir or self.workdir, f"redis{i}")
            os.makedirs(directory, exist_ok=True)
            argv = [
                binary, "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--daemonize", "no", "--dir", directory,
                # The primary's initial sync to each replica starts at once,
                # rather than 5 s later; no effect once they are online.
                "--repl-diskless-sync-delay", "0",
            ]
            if connections is not None:
                argv += ["--maxclients", str(connections + SWEEP_SPARE_CONNECTIONS)]
            if data_dir:
                argv += ["--appendonly", "yes", "--appendfsync", "always"]
            else:
                argv += ["--appendonly", "no"]
            if i > 0:
                argv += ["--replicaof", "127.0.0.1", str(ports[0])]
            proc, log_path = self._spawn_logged(argv, f"redis{i}")
            wait_redis_ready(proc, log_path, argv, port)
        wait_redis_replicas(ports[0], size - 1)
        self.port = ports[0]

    def start_echo(self, binary):
        self.port = free_port()
        self._start([binary, "server", str(self.port)], "echo")

    def _spawn_logged(self, argv, name):
        """Starts a foreign server with stdout and stderr in its log file."""
        log_path = os.path.join(self.workdir, f"{name}.log")
        with open(log_path, "w") as log:
            proc = self.procs.spawn(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.servers.append((proc, log_path))
        return proc, log_path

    def _start(self, argv, name):
        log_path = os.path.join(self.workdir, f"{name}.log")
        with open(log_path, "w") as log:
            env = dict(os.environ, RUST_LOG="info")
            proc = self.procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.servers.append((proc, log_path))
        wait_listening(proc, log_path, argv)

    def stop(self):
        for proc, _ in self.servers:
            self.procs.stop(proc)
        self.servers = []


def wait_listening(proc, log_path, argv):
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path) as f:
            log = f.read()
        if "listening on" in log:
            return
        if proc.poll() is not None:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {log.strip()[-500:]}")
        time.sleep(0.02)
    raise BenchError(f"{' '.join(argv)} did not listen within {READY_TIMEOUT:.0f} s")


def read_log(log_path):
    try:
        with open(log_path, errors="replace") as f:
            return f.read().strip()[-500:]
    except OSError:
        return ""


def wait_accepting(proc, log_path, argv, port):
    """Until the port accepts a connection (closed at once), bounded."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {read_log(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT):
                pass
        except OSError:
            time.sleep(0.02)
            continue
        # A port that accepts while its server has died belongs to someone else.
        if proc.poll() is not None:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {read_log(log_path)}")
        return
    raise BenchError(f"{' '.join(argv)} did not accept within {READY_TIMEOUT:.0f} s")


# --- redis -------------------------------------------------------------------


class RespError(Exception):
    """An error reply (-...) from redis."""


def redis_command(port, *words):
    """Sends one command to 127.0.0.1:port and returns its reply: str for a
    simple string, int, bytes or None for a bulk string; RespError for an
    error reply; OSError (or BenchError for a malformed reply) otherwise."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        request += f"${len(data)}\r\n".encode() + data + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as s:
        s.sendall(request)
        with s.makefile("rb") as f:
            return read_resp(f)


def read_resp(f):
    line = f.readline(RESP_MAX)
    if not line.endswith(b"\r\n"):
        raise BenchError(f"malformed or truncated redis reply {line[:100]!r}")
    kind, text = line[:1], line[1:-2]
    if kind == b"+":
        return text.decode(errors="replace")
    if kind == b"-":
        raise RespError(text.decode(errors="replace"))
    if kind == b":":
        return int(text)
    if kind == b"$":
        length = int(text)
        if length < 0:
            return None
        if length > RESP_MAX:
            raise BenchError(f"a {length}-byte redis reply is more than expected")
        data = f.read(length + 2)
        if len(data) != length + 2 or not data.endswith(b"\r\n"):
            raise BenchError("truncated redis bulk reply")
        return data[:-2]
    raise BenchError(f"unexpected redis reply {line[:100]!r}")


def wait_redis_ready(proc, log_path, argv, port):
    """Until PING answers PONG (not an error such as LOADING), bounded."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {read_log(log_path)}")
        try:
            if redis_command(port, "PING") == "PONG":
                return
        except (OSError, RespError, BenchError, ValueError) as e:
            last = str(e)
        time.sleep(0.02)
    raise BenchError(f"{' '.join(argv)} not ready within {READY_TIMEOUT:.0f} s ({last})")


def wait_redis_replicas(port, replicas):
    """Until the primary's INFO replication shows `replicas` connected
    replicas, every one state=online; bounded."""
    deadline = time.monotonic() + REPLICA_TIMEOUT
    info = ""
    while time.monotonic() < deadline:
        try:
            info = (redis_command(port, "INFO", "replication") or b"").decode(errors="replace")
        except (OSError, RespError, BenchError, ValueError) as e:
            info = str(e)
        fields = dict(
            line.split(":", 1) for line in info.splitlines() if ":" in line
        )
        states = [
            value for key, value in fields.items()
            if key.startswith("slave") and key[5:].isdigit()
        ]
        if (
            fields.get("connected_slaves") == str(replicas)
            and len(states) == replicas
            and all("state=online" in s.split(",") for s in states)
        ):
            return
        time.sleep(0.05)
    raise BenchError(
        f"redis on port {port}: {replicas} replicas not online within "
        f"{REPLICA_TIMEOUT:.0f} s; INFO replication: {info.strip()[-300:]!r}"
    )


def command_output(argv, check=False):
    """A short command's standard output, or None if it could not run."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=check
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def redis_version(binary):
    out = command_output([binary, "--version"])
    if out is None:
        return "version unknown"
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "version unknown"


# --- rows --------------------------------------------------------------------


class Row:
    """One table row: what to start, how to drive it, and its results."""

    def __init__(self, workload, name, kind, size=0, fsync=False, connections=None,
                 requests=None):
        self.workload = workload
        # Sweep rows: connections (customers) and requests per connection.
        self.connections = connections
        self.requests = requests
        self.rss = []  # sweep rows: per repetition, the max VmRSS of each server (KiB)
        self.overflows = []  # sweep rows: listen-queue overflows per repetition
        self.name = name
        # "echo", "echo+client", "factory" (ours), "original" or "redis"
        self.kind = kind
        self.size = size
        self.fsync = fsync
        self.results = []  # [ops/s, mean, p50, p99] per repetition

    @property
    def label(self):
        if self.connections is not None:
            return f"{self.workload:<6}{self.connections:>6} conns {self.name}"
        return f"{self.workload:<6}{self.name}"

    def load(self):
        """(customers, requests per customer, client mode) of this row."""
        customers, requests, mode = WORKLOADS[self.workload]
        if self.connections is not None:
            return self.connections, self.requests, mode
        return customers, requests, mode


def servers(size):
    return f"{size} server{'s' if size > 1 else ''}"


def make_rows(with_fsync, original=False, redis=False):
    rows = []
    for workload in WORKLOADS:
        rows.append(Row(workload, "echo floor", "echo"))
        rows.append(Row(workload, "echo server, factory client", "echo+client"))
        for size in CLUSTER_SIZES:
            rows.append(Row(workload, servers(size), "factory", size))
        if with_fsync:
            for size in CLUSTER_SIZES:
                rows.append(Row(workload, f"{servers(size)}, fsync always", "factory", size, True))
        if original:
            for size in CLUSTER_SIZES:
                rows.append(Row(workload, f"original {servers(size)}", "original", size))
        if redis:
            # With --data-dir, redis also runs with an fsync'd append-only
            # file, to compare with our fsync rows.
            for fsync in (False, True) if with_fsync else (False,):
                for size in CLUSTER_SIZES:
                    name = f"redis {servers(size)}" + (", appendfsync always" if fsync else "")
                    rows.append(Row(workload, name, "redis", size, fsync=fsync))
    return rows


def run_row(row, bins, procs, data_base):
    """Starts the row's servers, drives them once, stops them; returns
    [ops/s, mean µs, p50 µs, p99 µs]."""
    customers, requests, mode = row.load()
    workdir = tempfile.mkdtemp(prefix="loadbench-")
    data_dir = tempfile.mkdtemp(prefix="loadbench-data-", dir=data_base) if row.fsync else None
    cluster = Cluster(procs, workdir)
    try:
        start_row(row, bins, cluster, data_dir)
        argv = client_argv(row, bins, cluster.port, customers, requests, mode)
        if row.connections is not None:
            return sweep_run(row, procs, cluster, argv)
        out = procs.run(argv)
        return parse_stats(out)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def start_row(row, bins, cluster, data_dir):
    for attempt in range(START_ATTEMPTS):
        try:
            if row.kind == "factory":
                binary = getattr(row, "binary", None) or bins["server"]
                cluster.start_factory(binary, row.size, data_dir, row.connections)
                warm_up(row, bins, cluster)
            elif row.kind == "original":
                cluster.start_original(bins["original"], row.size)
                warm_up(row, bins, cluster)
            elif row.kind == "redis":
                cluster.start_redis(bins["redis"], row.size, data_dir, row.connections)
                warm_up(row, bins, cluster)
            else:
                cluster.start_echo(bins["echo"])
            return
        except BenchError:
            cluster.stop()
            if attempt == START_ATTEMPTS - 1:
                raise


def warm_up(row, bins, cluster):
    """One write per customer, unmeasured: makes server 0 primary, connects
    its backups and creates the records the read workload reads (for redis:
    the keys, written through to every replica)."""
    customers = row.load()[0]
    if row.kind == "redis":
        argv = [bins["resp_load"], "127.0.0.1", str(cluster.port), str(customers), "1", "1"]
        cluster.procs.run(argv + [str(row.size - 1)])
        return
    cluster.procs.run([bins["client"], "127.0.0.1", str(cluster.port), str(customers), "1", "1"])


def client_argv(row, bins, port, customers, requests, mode):
    if row.kind == "redis":
        # The last argument is the replicas each write's WAIT asks for.
        argv = [bins["resp_load"], "127.0.0.1", str(port), str(customers), str(requests)]
        return argv + [str(mode), str(row.size - 1)]
    if row.kind == "echo":
        argv = [bins["echo"], "client", "127.0.0.1", str(port), str(customers), str(requests)]
        return argv + (["--reads"] if mode == 2 else []) + ["--percentiles"]
    argv = [bins["client"], "127.0.0.1", str(port), str(customers), str(requests), str(mode)]
    if row.connections is not None:
        return argv + ["--percentiles", "--json"]
    return argv + ["--percentiles"]


def parse_stats(out, with_max=False):
    """The last line (client, echo_floor and resp_load print the same):
    mean, min, max, throughput, p50, p99."""
    lines = out.strip().splitlines()
    fields = lines[-1].split("\t") if lines else []
    if len(fields) != 6:
        raise BenchError(f"expected a 6-field stats line, got {out.strip()[-200:]!r}")
    mean, _min, top, ops, p50, p99 = (float(f) for f in fields)
    if with_max:
        return [ops, mean, p50, p99, top]
    return [ops, mean, p50, p99]


# --- the connections sweep ---------------------------------------------------


def listen_overflows():
    """TcpExt ListenOverflows from /proc/net/netstat (system-wide), or None."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:]))
            if "ListenOverflows" in fields:
                return int(fields["ListenOverflows"])
    return None


def vm_rss_kib(pid):
    """VmRSS of a live process in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def sweep_run(row, procs, cluster, argv):
    """Drives a sweep row once: [ops/s, mean, p50, p99, max, failed], with
    the servers' peak RSS and the listen-queue overflows kept on the row."""
    pids = [proc.pid for proc, _ in cluster.servers]
    peak = [0] * len(pids)

    def sample():
        for i, pid in enumerate(pids):
            peak[i] = max(peak[i], vm_rss_kib(pid) or 0)

    before = listen_overflows()
    status, out, err = procs.run_status(argv, during=sample)
    after = listen_overflows()
    sample()
    row.rss.append(peak)
    row.overflows.append(None if before is None or after is None else after - before)
    if row.kind == "redis":
        if status != 0:
            print(f"loadbench: {row.label}: resp_load exited {status}: {err.strip()[-300:]}",
                  file=sys.stderr)
            return None
        ops, mean, p50, p99, top = parse_stats(out, with_max=True)
        return [ops, mean, p50, p99, top, 0]
    try:
        stats = json.loads(out.strip().splitlines()[-1])
        return [stats["throughput_ops"], stats["mean_us"], stats.get("p50_us", 0.0),
                stats.get("p99_us", 0.0), stats["max_us"], stats["failed"]]
    except (IndexError, ValueError, KeyError) as e:
        raise BenchError(f"{' '.join(argv)} exited {status} without a stats line ({e}): "
                         f"{err.strip()[-300:]}")


def make_sweep_rows(connections, total, original=False, redis=False, compare=(),
                    workloads=tuple(WORKLOADS), sizes=SWEEP_SIZES):
    """The sweep's rows; `compare` is (name, server binary) pairs of further
    builds of ours, each row beside ours in the same repetitions."""
    rows = []
    for workload in workloads:
        for size in sizes:
            for n in connections:
                requests = max(1, total // n)
                rows.append(Row(workload, servers(size), "factory", size,
                                connections=n, requests=requests))
                for name, binary in compare:
                    row = Row(workload, f"{name} {servers(size)}", "factory", size,
                              connections=n, requests=requests)
                    row.binary, row.variant = binary, name
                    rows.append(row)
                if original:
                    rows.append(Row(workload, f"original {servers(size)}", "original", size,
                                    connections=n, requests=requests))
                if redis:
                    rows.append(Row(workload, f"redis {servers(size)}", "redis", size,
                                    connections=n, requests=requests))
    return rows


def sweep_reference(rows, row):
    """The ops/s median of the 64-connection row of the same system."""
    for other in rows:
        if (other.connections == 64 and other.kind == row.kind and other.size == row.size
                and other.workload == row.workload
                and getattr(other, "variant", None) == getattr(row, "variant", None)):
            med = sweep_medians(other)
            return med[0] if med else None
    return None


def sweep_medians(row):
    runs = [r for r in row.results if r is not None]
    if not runs:
        return None
    return [statistics.median(r[i] for r in runs) for i in range(5)]


def print_sweep_table(rows):
    header = (
        f"{'row':<44} {'ops/s':>10} {'p50 µs':>9} {'p99 µs':>10} {'max µs':>11}"
        f" {'failed':>7} {'overflows':>9} {'/64':>5}  rss MiB (max, per server)"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        med = sweep_medians(row)
        broken = sum(1 for r in row.results if r is None)
        failed = sum(r[5] for r in row.results if r is not None)
        failed_text = f"{failed:,}" + (f"+{broken} run failed" if broken else "")
        known = [o for o in row.overflows if o is not None]
        overflows = f"{sum(known):,}" if known else "?"
        rss = "/".join(
            f"{max(rep[i] for rep in row.rss) / 1024:.0f}" for i in range(len(row.rss[0]))
        ) if row.rss else "?"
        if med is None:
            print(f"{row.label:<44} {'':>10} {'':>9} {'':>10} {'':>11} {failed_text:>7}"
                  f" {overflows:>9} {'':>5}  {rss}")
            continue
        ops, _mean, p50, p99, top = med
        ref = sweep_reference(rows, row)
        ratio = f"{ops / ref:.2f}" if ref else ""
        print(
            f"{row.label:<44} {ops:>10,.0f} {p50:>9.1f} {p99:>10.1f} {top:>11.1f}"
            f" {failed_text:>7} {overflows:>9} {ratio:>5}  {rss}"
        )


def print_sweep_comparisons(rows):
    """Ours over theirs at the same workload, size and connections."""
    pairs = [
        (ours, theirs)
        for theirs in rows
        if theirs.kind in ("original", "redis") or getattr(theirs, "variant", None)
        for ours in rows
        if ours.kind == "factory" and not getattr(ours, "variant", None)
        and ours.workload == theirs.workload
        and ours.size == theirs.size and ours.connections == theirs.connections
    ]
    if not pairs:
        return
    print()
    print("ours / theirs: our ops/s over theirs (medians), same workload, size and connections")
    for ours, theirs in pairs:
        a, b = sweep_medians(ours), sweep_medians(theirs)
        ratio = f"{a[0] / b[0]:.2f}" if a and b and b[0] > 0 else "n/a"
        print(f"{ours.label:<44} {theirs.name:<20} {ratio:>6}{per_rep_range(ours, theirs)}")


def per_rep_range(ours, theirs):
    """The range of ours / theirs within each repetition (rows run in the
    same repetitions, so the k-th results belong together)."""
    ratios = [a[0] / b[0] for a, b in zip(ours.results, theirs.results)
              if a is not None and b is not None and b[0] > 0]
    if not ratios:
        return ""
    return f"  ({min(ratios):.2f}-{max(ratios):.2f})"


def describe_sweep(args, bins, total):
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    pin = "every process pinned to CPU 0 (taskset -c 0)" if args.pin else "unpinned"
    print(f"loadbench --sweep {date}, {git_revision()}, {os.cpu_count()} CPUs, {pin}, "
          f"{args.reps} reps (medians)")
    print(f"  each row: {total:,} requests split over its connections (one client thread "
          "each); write = client mode 1, read = mode 2")
    print(f"  open files: {open_files_text()}")
    if args.original:
        print(f"  original: {bins['original']}, driven by our client")
    if args.redis:
        print(f"  redis: {bins['redis']} {redis_version(bins['redis'])}, driven by resp_load "
              "(SET + WAIT N-1 0; GET)")
    print(f"  ours: {args.server}")
    for name, binary in args.compare:
        print(f"  {name}: {binary}")
    print("  failed: failed requests, all reps; overflows: TcpExt ListenOverflows during the")
    print("  client runs, all reps, system-wide; rss: the most VmRSS of each server during")
    print("  the client runs (ours and the original: primary first; redis: primary first)")
    print()


def raise_open_files():
    """The soft open-file limit to the hard one, for this script and all it
    starts; a 10,000-connection row needs it."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            print(f"loadbench: cannot raise the open-file limit: {e}", file=sys.stderr)


def open_files_text():
    if resource is None:
        return "unknown"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"soft {soft}, hard {hard}"


# --- the run -----------------------------------------------------------------


def interleaved(rows, reps):
    """(rep, row) for every row once per repetition, the order rotated each
    time, so that a machine that drifts during the run weighs on every row
    alike."""
    for rep in range(reps):
        shift = rep % len(rows)
        for row in rows[shift:] + rows[:shift]:
            yield rep, row


def run_all(rows, bins, procs, reps, data_base):
    for rep, row in interleaved(rows, reps):
        started = time.monotonic()
        row.results.append(run_row(row, bins, procs, data_base))
        ops = row.results[-1][0] if row.results[-1] is not None else 0.0
        print(
            f"  rep {rep + 1}/{reps}  {row.label:<42} {ops:>12,.0f} ops/s"
            f"  ({time.monotonic() - started:.1f} s)",
            file=sys.stderr,
            flush=True,
        )


def medians(row):
    return [statistics.median(r[i] for r in row.results) for i in range(4)]


def reference(rows, workload, name):
    for row in rows:
        if row.workload == workload and row.name == name:
            return medians(row)[0]
    return None


def one_server(rows, row):
    """The ops/s of the 1-server row of the same system: ours (in memory)
    for our rows and the echo rows, else the original's or redis's."""
    kind = row.kind if row.kind in ("original", "redis") else "factory"
    for other in rows:
        if (other.workload == row.workload and other.kind == kind and other.size == 1
                and not other.fsync):
            return medians(other)[0]
    return None


# The fast-path issue's goals for ours / theirs: (system, workload, size) ->
# (least ratio, whether equal is enough).
GOALS = {
    ("original", "write", 3): (4.0, True),
    ("original", "write", 1): (1.0, True),
    ("original", "read", 1): (1.0, True),
}
GOALS.update({("redis", w, n): (1.0, False) for w in WORKLOADS for n in CLUSTER_SIZES})


def comparisons(rows):
    """(ours, theirs) row pairs: same workload and cluster size; redis rows
    with an append-only file pair with our fsync rows."""
    pairs = []
    for theirs in rows:
        if theirs.kind not in ("original", "redis"):
            continue
        for ours in rows:
            if (ours.kind == "factory" and ours.workload == theirs.workload
                    and ours.size == theirs.size
                    and ours.fsync == (theirs.kind == "redis" and theirs.fsync)):
                pairs.append((ours, theirs))
    return pairs


def print_comparisons(rows):
    pairs = comparisons(rows)
    if not pairs:
        return
    print()
    print("ours / theirs: our ops/s over theirs, medians, same workload and cluster size")
    print("(per rep: the range of the ratios within each repetition)")
    header = f"{'ours':<36} {'theirs':<36} {'ratio':>6}  {'per rep':<11}  goal"
    print(header)
    print("-" * (len(header) + 10))  # the longest goal is 14 characters
    for ours, theirs in pairs:
        if medians(theirs)[0] <= 0 or min(r[0] for r in theirs.results) <= 0:
            print(f"{ours.label:<36} {theirs.name:<36} (no ops/s to divide by)")
            continue
        ratio = medians(ours)[0] / medians(theirs)[0]
        per_rep = [a[0] / b[0] for a, b in zip(ours.results, theirs.results)]
        spread = f"{min(per_rep):.2f}-{max(per_rep):.2f}"
        goal = GOALS.get((theirs.kind, ours.workload, ours.size))
        if goal:
            least, equal_ok = goal
            met = ratio >= least if equal_ok else ratio > least
            goal_text = f"{'>=' if equal_ok else '>'} {least:.2f} {'met' if met else 'NOT met'}"
        else:
            goal_text = ""
        print(
            f"{ours.label:<36} {theirs.name:<36} {ratio:>6.2f}  {spread:<11}  {goal_text}".rstrip()
        )


def print_table(rows):
    header = (
        f"{'row':<42} {'ops/s':>10} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9}"
        f" {'/echo':>6} {'/1 srv':>6} {'spread':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ops, mean, p50, p99 = medians(row)
        floor = reference(rows, row.workload, "echo floor")
        one = one_server(rows, row)
        all_ops = [r[0] for r in row.results]
        spread = (max(all_ops) - min(all_ops)) / ops * 100 if ops else 0.0
        print(
            f"{row.label:<42} {ops:>10,.0f} {mean:>9.1f} {p50:>9.1f} {p99:>9.1f}"
            f" {ops / floor:>6.2f} {ops / one:>6.2f} {spread:>6.0f}%"
        )


def describe(args, reps, fsync_note, bins):
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rev = git_revision()
    pin = "every process pinned to CPU 0 (taskset -c 0)" if args.pin else "unpinned"
    print(f"loadbench {date}, {rev}, {os.cpu_count()} CPUs, {pin}, {reps} reps (medians)")
    for name, (customers, requests, mode) in WORKLOADS.items():
        print(f"  {name}: {customers} customers x {requests:,} requests (client mode {mode})")
    if fsync_note:
        print(f"  {fsync_note}")
    if args.original:
        print(f"  original: {bins['original']} (C++), same command line without --bind, driven")
        print("    by our client like our rows; no persistence, so no fsync rows")
    if args.redis:
        version = redis_version(bins["redis"])
        print(f"  redis: {bins['redis']} {version}, primary + N-1 replicas (--replicaof), "
              "driven by resp_load:")
        print("    write = SET customer:<id> <n> + WAIT N-1 0 pipelined (SET alone for 1 server),")
        print("    read = GET customer:<id>; all requests to the primary")
        print("    redis rows: no persistence (--save \"\" --appendonly no)")
        if args.data_dir:
            print("    'appendfsync always' rows: --appendonly yes --appendfsync always, data")
            print(f"    directories under {args.data_dir}; compared with our fsync rows")
    print("  /echo: ops/s over the echo floor's; /1 srv: over the 1-server row's of the same")
    print("  system without persistence (ours for our rows and the echo rows);")
    print("  spread: (max - min) / median of ops/s over the repetitions")
    print()


def git_revision():
    rev = command_output(["git", "-C", ROOT, "describe", "--always", "--dirty"], check=True)
    return f"rev {rev.strip()}" if rev else "rev unknown"


def server_supports_data_dir(server):
    help_text = command_output([server, "--help"]) or ""
    return "--data-dir" in help_text and "--fsync" in help_text


def on_sigterm(_signum, _frame):
    """SIGTERM unwinds like Ctrl-C, so that main's `finally` kills what we started."""
    raise KeyboardInterrupt


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    p.add_argument("--pin", action="store_true", help="run every process under taskset -c 0")
    p.add_argument(
        "--data-dir", nargs="?", const=os.path.join(ROOT, "target"), metavar="BASE",
        help="add rows with --data-dir DIR --fsync always; DIRs are made under BASE "
        "(default target/, on disk rather than tmpfs) and removed",
    )
    p.add_argument(
        "--original", metavar="DIR",
        help="add rows 'original N servers': the original C++ `server` in DIR (or DIR "
        "itself if it is the binary), driven by our client like our rows",
    )
    p.add_argument(
        "--redis", nargs="?", const="redis-server", metavar="REDIS_SERVER",
        help="add rows 'redis N servers': a redis-server primary and N-1 replicas "
        "(default binary: redis-server on PATH), writes SET + WAIT N-1 0, driven by "
        "resp_load; with --data-dir, also rows with --appendonly yes --appendfsync always",
    )
    p.add_argument(
        "--sweep", action="store_true",
        help="run the connections sweep instead: writes and reads, 1 and 3 servers, "
        "8 to 10,000 connections (with --original / --redis side by side)",
    )
    p.add_argument(
        "--sweep-connections", metavar="N,N,...",
        default=",".join(str(n) for n in SWEEP_CONNECTIONS),
        help="the sweep's connection counts (default %(default)s)",
    )
    p.add_argument(
        "--sweep-total", type=int, default=SWEEP_TOTAL, metavar="REQUESTS",
        help="requests per sweep row, split over its connections (default %(default)s)",
    )
    p.add_argument(
        "--compare", action="append", default=[], metavar="NAME=SERVER",
        help="--sweep only: rows for another build of our server (a label and its binary) "
        "beside ours in the same repetitions; repeatable. The comparison section then "
        "gives ours / NAME with the range of the per-repetition ratios",
    )
    p.add_argument("--sweep-workloads", default="write,read", metavar="W,W",
                   help="the sweep's workloads (default %(default)s)")
    p.add_argument("--sweep-sizes", default=",".join(str(n) for n in SWEEP_SIZES),
                   metavar="N,N", help="the sweep's cluster sizes (default %(default)s)")
    p.add_argument("--server", default=os.path.join(RELEASE, "server"), help="our server")
    p.add_argument("--client", default=os.path.join(RELEASE, "client"), help="our client")
    p.add_argument("--echo", default=os.path.join(RELEASE, "examples", "echo_floor"),
                   help="the echo_floor example")
    p.add_argument("--resp-load", default=os.path.join(RELEASE, "examples", "resp_load"),
                   help="the resp_load example (only with --redis)")
    p.epilog = (
        "Binaries default to target/release (make loadbench builds them; for --redis "
        "also `cargo build --release --example resp_load`). A --original or --redis "
        "whose binary is missing exits with status 2."
    )
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be 1 or more")
    try:
        args.sweep_connections = [int(n) for n in args.sweep_connections.split(",")]
    except ValueError:
        p.error("--sweep-connections takes numbers separated by commas")
    if any(n < 1 or n > 10_000 for n in args.sweep_connections):
        p.error("--sweep-connections: each between 1 and 10000 (the clients' limit)")
    if args.sweep_total < 1:
        p.error("--sweep-total must be 1 or more")
    if args.sweep and args.data_dir:
        p.error("--sweep runs without --data-dir")
    compare = []
    for text in args.compare:
        name, sep, path = text.partition("=")
        if not sep or not name or not path or not os.access(path, os.X_OK):
            p.error(f"--compare: expected NAME=SERVER with an executable SERVER, got {text!r}")
        compare.append((name, os.path.abspath(path)))
    args.compare = compare
    args.sweep_workloads = args.sweep_workloads.split(",")
    if any(w not in WORKLOADS for w in args.sweep_workloads):
        p.error(f"--sweep-workloads: each one of {', '.join(WORKLOADS)}")
    try:
        args.sweep_sizes = [int(n) for n in args.sweep_sizes.split(",")]
    except ValueError:
        p.error("--sweep-sizes takes numbers separated by commas")
    if any(n < 1 or n > 9 for n in args.sweep_sizes):
        p.error("--sweep-sizes: each cluster size 1 to 9")
    return args


def main():
    args = parse_args()
    bins = {"server": args.server, "client": args.client, "echo": args.echo}
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"loadbench: {name} binary {path} not found; run `make loadbench`")
    if args.original:
        path = args.original
        if os.path.isdir(path):
            path = os.path.join(path, "server")
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print(f"loadbench: --original: no executable original server at {path}",
                  file=sys.stderr)
            sys.exit(2)
        bins["original"] = os.path.abspath(path)
    if args.redis:
        path = shutil.which(args.redis)
        if not path:
            print(f"loadbench: --redis: {args.redis} not found (install redis-server, "
                  "e.g. apt-get install redis-server, or give its path)", file=sys.stderr)
            sys.exit(2)
        if not os.access(args.resp_load, os.X_OK):
            print(f"loadbench: --redis: resp_load binary {args.resp_load} not found; run "
                  "`cargo build --release --example resp_load`", file=sys.stderr)
            sys.exit(2)
        bins["redis"] = path
        bins["resp_load"] = args.resp_load
    fsync_note = None
    if args.data_dir and not server_supports_data_dir(args.server):
        fsync_note = "fsync rows skipped: `server --help` offers no --data-dir/--fsync"
        args.data_dir = None
    elif args.data_dir:
        os.makedirs(args.data_dir, exist_ok=True)
        fsync_note = f"fsync rows: data directories under {args.data_dir}"
    if args.sweep:
        raise_open_files()
        rows = make_sweep_rows(args.sweep_connections, args.sweep_total,
                               bool(args.original), bool(args.redis), args.compare,
                               args.sweep_workloads, args.sweep_sizes)
    else:
        rows = make_rows(bool(args.data_dir), bool(args.original), bool(args.redis))
    procs = Processes(args.pin)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run_all(rows, bins, procs, args.reps, args.data_dir)
    except BenchError as e:
        sys.exit(f"loadbench: {e}")
    except KeyboardInterrupt:
        sys.exit("loadbench: interrupted")
    finally:
        procs.stop_all()
    if args.sweep:
        describe_sweep(args, bins, args.sweep_total)
        print_sweep_table(rows)
        print_sweep_comparisons(rows)
        return
    describe(args, args.reps, fsync_note, bins)
    print_table(rows)
    print_comparisons(rows)


if __name__ == "__main__":
    main()
