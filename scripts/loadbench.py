#!/usr/bin/env python3
"""Load benchmark: release servers in clusters of 1, 2 and 3, driven by the
release client, beside the echo floor, in one interleaved run.

    scripts/loadbench.py [--reps N] [--pin] [--data-dir [BASE]]

Workloads (each row's configuration gets a fresh cluster every repetition):

  write  8 customers x 20,000 orders  (client mode 1)
  read   128 customers x 200 reads    (client mode 2)

Rows per workload: the echo floor (benches/echo_floor.rs: a thread-per-
connection server that answers at once, and its own minimal client); the
factory client against that echo server (the client's own cost); clusters of
1, 2 and 3 servers; and with --data-dir, the same clusters with every server
given `--data-dir DIR --fsync always` (only if `server --help` offers it).

Repetitions are interleaved (every row once per repetition, in an order
rotated each time) and the table shows medians. --pin runs every process
under `taskset -c 0`, which on a 2-core machine removes the cross-CPU wakeup
cost and makes runs repeat within a few percent.

Every process started here is killed by its PID when its run ends, and on
errors or Ctrl-C; every wait is bounded. Python 3 standard library only.
"""

import argparse
import datetime
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")

WORKLOADS = {
    # name: (customers, requests per customer, client mode)
    "write": (8, 20_000, 1),
    "read": (128, 200, 2),
}
CLUSTER_SIZES = (1, 2, 3)

READY_TIMEOUT = 10.0  # a server must log "listening on" within this
RUN_TIMEOUT = 300.0  # one client run
KILL_TIMEOUT = 5.0  # after SIGTERM, before SIGKILL
START_ATTEMPTS = 3  # a free port can be taken between probe and bind


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


class Cluster:
    """Servers (or the echo server) on loopback ports, logging to files."""

    def __init__(self, procs, workdir):
        self.procs = procs
        self.workdir = workdir
        self.servers = []  # (Popen, log path)
        self.port = None

    def start_factory(self, binary, size, data_dir=None):
        ports = [free_port() for _ in range(size)]
        for i, port in enumerate(ports):
            argv = [binary, str(port), str(i), str(size - 1)]
            for j, peer_port in enumerate(ports):
                if j != i:
                    argv += [str(j), "127.0.0.1", str(peer_port)]
            argv += ["--bind", "127.0.0.1"]
            if data_dir:
                argv += ["--data-dir", os.path.join(data_dir, f"s{i}"), "--fsync", "always"]
            self._start(argv, f"server{i}")
        self.port = ports[0]

    def start_echo(self, binary):
        self.port = free_port()
        self._start([binary, "server", str(self.port)], "echo")

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


# --- rows --------------------------------------------------------------------


class Row:
    """One table row: what to start, how to drive it, and its results."""

    def __init__(self, workload, name, kind, size=0, fsync=False):
        self.workload = workload
        self.name = name
        self.kind = kind  # "echo", "echo+client" or "factory"
        self.size = size
        self.fsync = fsync
        self.results = []  # [ops/s, mean, p50, p99] per repetition

    @property
    def label(self):
        return f"{self.workload:<6}{self.name}"


def make_rows(with_fsync):
    rows = []
    for workload in WORKLOADS:
        rows.append(Row(workload, "echo floor", "echo"))
        rows.append(Row(workload, "echo server, factory client", "echo+client"))
        for size in CLUSTER_SIZES:
            rows.append(Row(workload, f"{size} server{'s' if size > 1 else ''}", "factory", size))
        if with_fsync:
            for size in CLUSTER_SIZES:
                name = f"{size} server{'s' if size > 1 else ''}, fsync always"
                rows.append(Row(workload, name, "factory", size, fsync=True))
    return rows


def run_row(row, bins, procs, data_base):
    """Starts the row's servers, drives them once, stops them; returns
    [ops/s, mean µs, p50 µs, p99 µs]."""
    customers, requests, mode = WORKLOADS[row.workload]
    workdir = tempfile.mkdtemp(prefix="loadbench-")
    data_dir = tempfile.mkdtemp(prefix="loadbench-data-", dir=data_base) if row.fsync else None
    cluster = Cluster(procs, workdir)
    try:
        start_row(row, bins, cluster, data_dir)
        out = procs.run(client_argv(row, bins, cluster.port, customers, requests, mode))
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
                cluster.start_factory(bins["server"], row.size, data_dir)
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
    its backups and creates the records the read workload reads."""
    customers = WORKLOADS[row.workload][0]
    cluster.procs.run([bins["client"], "127.0.0.1", str(cluster.port), str(customers), "1", "1"])


def client_argv(row, bins, port, customers, requests, mode):
    if row.kind == "echo":
        argv = [bins["echo"], "client", "127.0.0.1", str(port), str(customers), str(requests)]
        return argv + (["--reads"] if mode == 2 else []) + ["--percentiles"]
    argv = [bins["client"], "127.0.0.1", str(port), str(customers), str(requests), str(mode)]
    return argv + ["--percentiles"]


def parse_stats(out):
    """The last line: mean, min, max, throughput, p50, p99."""
    lines = out.strip().splitlines()
    fields = lines[-1].split("\t") if lines else []
    if len(fields) != 6:
        raise BenchError(f"expected a 6-field stats line, got {out.strip()[-200:]!r}")
    mean, _min, _max, ops, p50, p99 = (float(f) for f in fields)
    return [ops, mean, p50, p99]


# --- the run -----------------------------------------------------------------


def run_all(rows, bins, procs, reps, data_base):
    for rep in range(reps):
        shift = rep % len(rows)
        order = rows[shift:] + rows[:shift]
        for row in order:
            started = time.monotonic()
            row.results.append(run_row(row, bins, procs, data_base))
            ops = row.results[-1][0]
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
        one = reference(rows, row.workload, "1 server")
        all_ops = [r[0] for r in row.results]
        spread = (max(all_ops) - min(all_ops)) / ops * 100 if ops else 0.0
        print(
            f"{row.label:<42} {ops:>10,.0f} {mean:>9.1f} {p50:>9.1f} {p99:>9.1f}"
            f" {ops / floor:>6.2f} {ops / one:>6.2f} {spread:>6.0f}%"
        )


def describe(args, reps, fsync_note):
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rev = git_revision()
    pin = "every process pinned to CPU 0 (taskset -c 0)" if args.pin else "unpinned"
    print(f"loadbench {date}, {rev}, {os.cpu_count()} CPUs, {pin}, {reps} reps (medians)")
    for name, (customers, requests, mode) in WORKLOADS.items():
        print(f"  {name}: {customers} customers x {requests:,} requests (client mode {mode})")
    if fsync_note:
        print(f"  {fsync_note}")
    print("  /echo: ops/s over the echo floor's; /1 srv: over the (in-memory) 1-server row's;")
    print("  spread: (max - min) / median of ops/s over the repetitions")
    print()


def git_revision():
    try:
        rev = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return f"rev {rev}"
    except (OSError, subprocess.SubprocessError):
        return "rev unknown"


def server_supports_data_dir(server):
    try:
        help_text = subprocess.run(
            [server, "--help"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
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
    p.add_argument("--server", default=os.path.join(RELEASE, "server"))
    p.add_argument("--client", default=os.path.join(RELEASE, "client"))
    p.add_argument("--echo", default=os.path.join(RELEASE, "examples", "echo_floor"))
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be 1 or more")
    return args


def main():
    args = parse_args()
    bins = {"server": args.server, "client": args.client, "echo": args.echo}
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"loadbench: {name} binary {path} not found; run `make loadbench`")
    fsync_note = None
    if args.data_dir and not server_supports_data_dir(args.server):
        fsync_note = "fsync rows skipped: `server --help` offers no --data-dir/--fsync"
        args.data_dir = None
    elif args.data_dir:
        os.makedirs(args.data_dir, exist_ok=True)
        fsync_note = f"fsync rows: data directories under {args.data_dir}"
    rows = make_rows(with_fsync=bool(args.data_dir))
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
    describe(args, args.reps, fsync_note)
    print_table(rows)


if __name__ == "__main__":
    main()
