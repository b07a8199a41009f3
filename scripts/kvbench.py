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
--etcd` (8 closed-loop writers over the v3 JSON gateway).

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


def kv_load(procs, bins, server, args, resp=None):
    """Runs `client kv load server ARGS --json`; the report, or BenchError."""
    argv = [bins["client"], "kv", "load", server, "--json", "--percentiles"] + args
    if resp is not None:
        argv += ["--resp"] + (["--wait", str(resp)] if resp > 0 else [])
    code, out, err = procs.run_status(argv, timeout=RUN_TIMEOUT)
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise lb.BenchError(f"{' '.join(argv)} exited {code}: {err.strip()[-500:]}")
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
                                r = kv_load(procs, bins, server, cell_args(cell, args.duration), resp)
                                cell.results[name].append(
                                    [r["throughput_ops"], r["p50_us"], r["p99_us"], r["max_us"]])
                            print(f"rep {rep + 1}: {cell.label()}: ours "
                                  f"{cell.results['ours'][-1][0]:.0f}, redis "
                                  f"{cell.results['redis'][-1][0]:.0f} ops/s", file=sys.stderr)
                finally:
                    ours.stop()
                    redis.stop()
                turn += 1  # the next size starts with the other system
    return cells, echo


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
          f" {'redis ops/s':>11} {'p50':>7} {'p99':>7} {'max':>8} | {'ours/redis':>10}")
    for c in cells:
        o, r = c.results["ours"], c.results["redis"]
        if not o or not r:
            continue
        ratio = med(o, 0) / med(r, 0) if med(r, 0) else float("inf")
        print(f"{c.size:>7} {c.op:<5} {c.value:>6} {c.connections:>4} {c.depth:>5} |"
              f" {med(o, 0):>10.0f} {med(o, 1):>7.0f} {med(o, 2):>7.0f} {med(o, 3):>8.0f} |"
              f" {med(r, 0):>11.0f} {med(r, 1):>7.0f} {med(r, 2):>7.0f} {med(r, 3):>8.0f} |"
              f" {ratio:>10.2f}")
    print("latencies in us (p50, p99: medians over repetitions; max: median of each run's max)")
    if echo:
        floor = statistics.median(x[0] for x in echo)
        rows = [c for c in cells if c.size == 1 and c.op == "write" and c.depth > 1 and c.results["ours"]]
        for c in rows:
            print(f"target: 1-server pipelined writes >= 3x echo floor: {c.value} B, "
                  f"{c.connections} conn, depth {c.depth}: {med(c.results['ours'], 0) / floor:.2f}x")


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
    p.add_argument("--depths", type=int_list, default=[1, 32])
    p.add_argument("--ops", type=lambda t: t.split(","), default=["write", "read"])
    p.add_argument("--duration", type=float, default=1.0, help="seconds per cell (default 1)")
    p.add_argument("--keys", type=int, default=1_000_000, help="memory: keys (default 1,000,000)")
    p.add_argument("--etcd", nargs="?", const="etcd", metavar="ETCD",
                   help="fsync: etcd beside ours (default binary: etcd on PATH)")
    p.add_argument("--data-base", default=os.path.join(ROOT, "target"),
                   help="where data directories go (default target/, on disk)")
    p.add_argument("--server", default=os.path.join(RELEASE, "server"))
    p.add_argument("--client", default=os.path.join(RELEASE, "client"))
    p.add_argument("--echo", default=os.path.join(RELEASE, "examples", "echo_floor"))
    p.add_argument("--redis", default="redis-server", help="redis-server binary")
    args = p.parse_args()
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
    procs = lb.Processes(False)
    signal.signal(signal.SIGTERM, lb.on_sigterm)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        if args.mode == "grid":
            cells, echo = run_grid(args, bins, procs)
        elif args.mode == "fsync":
            import kvbench_fsync
            result = kvbench_fsync.run(args, bins, procs)
        else:
            import kvbench_memory
            result = kvbench_memory.run(args, bins, procs)
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
