#!/usr/bin/env python3
"""Balancer benchmark (issue 16, "Measure and report"): reads and writes
straight to the primary of a 3-server cluster, through `load` with the cache
off, and through `load` with the cache on at measured hit ratios; beside
Redis direct and behind twemproxy (Debian's `nutcracker`), in one
interleaved run.

    scripts/balancerbench.py [--reps N] [--connections 8,128] [--total N]

Every row gets fresh processes every repetition; repetitions are
interleaved (every row once per repetition) and the table shows medians.
Each connection is one thread of the load client making total/connections
requests one at a time, on its own customer (client modes 1 and 2, or
benches/resp_load.rs for the Redis rows):

  direct           client -> the primary (3 servers)
  load, cache off  client -> load CACHE_SIZE 0 -> 3 servers; reads are
                   spread round robin over the servers
  load, cache ~0%  load CACHE_SIZE 1: each connection reads its own
                   customer, so the one-record cache thrashes; the hit
                   ratio is measured, not set
  load, cache 100% load CACHE_SIZE = connections + 16, warmed by one read
                   of each customer before the timed run
  redis direct     resp_load -> redis-server (no persistence, no replicas)
  redis+twemproxy  resp_load -> nutcracker -> the same redis-server

A hit ratio of 90% is not offered: the load client reads one customer per
connection, so it cannot mix hits and misses at a chosen ratio.

For each balancer row the hit ratio and the share of reads each server
answered come from the balancer's /metrics (deltas over the timed run).

Needs the release binaries (`cargo build --release --bins --example
resp_load`), redis-server and nutcracker (`apt-get install -y redis-server
nutcracker`). Run it alone on the machine, or under
`flock /work/wt/bench.lock` where several people share one.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
READY_TIMEOUT = 20.0
RUN_TIMEOUT = 300.0
KILL_TIMEOUT = 10.0


class BenchError(Exception):
    pass


class Processes:
    """Every process started here, each stopped by its PID."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.live = []

    def spawn(self, argv, name):
        log_path = os.path.join(self.workdir, f"{name}.log")
        log = open(log_path, "w")
        env = dict(os.environ, RUST_LOG="info")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        log.close()
        self.live.append(proc)
        return proc, log_path

    def stop(self, proc):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=KILL_TIMEOUT)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=KILL_TIMEOUT)
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self):
        for proc in list(self.live):
            self.stop(proc)

    def run(self, argv):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if out.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {out.returncode}: {out.stderr.strip()[-400:]}")
        return out.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(proc, log_path, needle=None, port=None):
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise BenchError(f"{proc.args[0]} exited {proc.returncode}: {f.read()[-400:]}")
        if needle is not None:
            with open(log_path, errors="replace") as f:
                if needle in f.read():
                    return
        else:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                pass
        time.sleep(0.02)
    raise BenchError(f"{proc.args[0]} not ready within {READY_TIMEOUT:.0f} s")


def start_cluster(procs, bins, size=3):
    ports = [free_port() for _ in range(size)]
    for i, port in enumerate(ports):
        argv = [bins["server"], str(port), str(i), str(size - 1)]
        for j, p in enumerate(ports):
            if j != i:
                argv += [str(j), "127.0.0.1", str(p)]
        proc, log = procs.spawn(argv + ["--bind", "127.0.0.1"], f"server{i}")
        wait_for(proc, log, needle="listening on")
    # One write makes a primary; the others follow it.
    procs.run([bins["client"], "order", f"127.0.0.1:{ports[0]}", "999999", "0"])
    return ports


def primary_port(bins, ports):
    status = subprocess.run([bins["client"], "--status", ",".join(f"127.0.0.1:{p}" for p in ports)],
                            capture_output=True, text=True, timeout=30).stdout
    for line in status.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "primary":
            return int(fields[0].rsplit(":", 1)[1])
    raise BenchError(f"no primary in the status table:\n{status}")


def start_load(procs, bins, ports, cache_size):
    port, metrics = free_port(), free_port()
    argv = [bins["load"], str(port), str(cache_size), str(len(ports))]
    for i, p in enumerate(ports):
        argv += [str(i), "127.0.0.1", str(p)]
    argv += ["--bind", "127.0.0.1", "--metrics", f"127.0.0.1:{metrics}"]
    proc, log = procs.spawn(argv, "load")
    wait_for(proc, log, needle="balancer listening on")
    if cache_size > 0:
        deadline = time.monotonic() + READY_TIMEOUT
        while scrape(metrics).get("factory_balancer_cache_enabled", 0) != 1:
            if time.monotonic() > deadline:
                raise BenchError("the balancer's cache did not start")
            time.sleep(0.05)
    return port, metrics


def scrape(port):
    """The balancer's metrics: {name or name{labels}: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, value = line.rsplit(" ", 1)
        values[key] = float(value)
    return values


def answered(values):
    """Requests answered per server id, in id order."""
    found = {}
    for key, value in values.items():
        m = re.match(r'factory_balancer_answered_total\{.*id="(\d+)"\}', key)
        if m:
            found[int(m.group(1))] = value
    return [found[i] for i in sorted(found)]


def parse_stats(out):
    """mean, min, max, ops/s, p50, p99 (the load client's last line)."""
    fields = out.strip().splitlines()[-1].split("\t")
    if len(fields) != 6:
        raise BenchError(f"expected a 6-field stats line, got {out.strip()[-200:]!r}")
    mean, _min, _max, ops, p50, p99 = (float(f) for f in fields)
    return {"ops": ops, "mean": mean, "p50": p50, "p99": p99}


def client(bins, port, connections, requests, mode):
    return [bins["client"], "127.0.0.1", str(port), str(connections), str(requests), str(mode),
            "--percentiles"]


def run_factory(procs, bins, row, connections, requests):
    ports = start_cluster(procs, bins)
    mode = 1 if row["workload"] == "write" else 2
    extra = {}
    if row["cache"] is None:
        target = primary_port(bins, ports)
        result = parse_stats(procs.run(client(bins, target, connections, requests, mode)))
    else:
        port, metrics = start_load(procs, bins, ports, row["cache"](connections))
        # Every customer written once (and, with a cache, read once).
        procs.run(client(bins, port, connections, 1, 1))
        if row.get("warm"):
            procs.run(client(bins, port, connections, 1, 2))
        before = scrape(metrics)
        result = parse_stats(procs.run(client(bins, port, connections, requests, mode)))
        after = scrape(metrics)
        hits = after["factory_balancer_cache_hits_total"] - before["factory_balancer_cache_hits_total"]
        misses = (after["factory_balancer_cache_misses_total"]
                  - before["factory_balancer_cache_misses_total"])
        if hits + misses > 0:
            extra["hit ratio"] = f"{100 * hits / (hits + misses):.1f}%"
        served = [a - b for a, b in zip(answered(after), answered(before))]
        if sum(served) > 0 and mode == 2:
            extra["shares"] = "/".join(f"{100 * s / sum(served):.1f}" for s in served)
    result.update(extra)
    return result


def run_redis(procs, bins, row, connections, requests):
    port = free_port()
    workdir = tempfile.mkdtemp(dir=procs.workdir)
    proc, log = procs.spawn([bins["redis"], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir, "--daemonize", "no",
                             "--maxclients", str(connections + 64)], "redis")
    wait_for(proc, log, port=port)
    target = port
    if row["proxy"]:
        target = free_port()
        conf = os.path.join(workdir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write("pool:\n"
                    f"  listen: 127.0.0.1:{target}\n"
                    "  hash: fnv1a_64\n"
                    "  distribution: ketama\n"
                    "  redis: true\n"
                    "  server_connections: 1\n"
                    "  servers:\n"
                    f"   - 127.0.0.1:{port}:1\n")
        proc, log = procs.spawn([bins["nutcracker"], "-c", conf, "-s", str(free_port())], "nutcracker")
        wait_for(proc, log, port=target)
    mode = 1 if row["workload"] == "write" else 2
    argv = [bins["resp_load"], "127.0.0.1", str(target), str(connections), "1", "1", "0"]
    procs.run(argv)
    argv = [bins["resp_load"], "127.0.0.1", str(target), str(connections), str(requests), str(mode), "0"]
    return parse_stats(procs.run(argv))


def make_rows():
    rows = []
    for workload in ("read", "write"):
        rows.append({"name": "direct (primary)", "workload": workload, "cache": None})
        rows.append({"name": "load, cache off", "workload": workload, "cache": lambda n: 0})
    rows.append({"name": "load, cache ~0% (size 1)", "workload": "read", "cache": lambda n: 1})
    rows.append({"name": "load, cache 100%", "workload": "read", "cache": lambda n: n + 16,
                 "warm": True})
    for workload in ("read", "write"):
        rows.append({"name": "redis direct", "workload": workload, "redis": True, "proxy": False})
        rows.append({"name": "redis+twemproxy", "workload": workload, "redis": True, "proxy": True})
    return rows


def median_row(results):
    out = {k: statistics.median(r[k] for r in results) for k in ("ops", "mean", "p50", "p99")}
    for key in ("hit ratio", "shares"):
        if key in results[-1]:
            out[key] = ", ".join(r[key] for r in results)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--connections", default="8,128")
    p.add_argument("--total", type=int, default=40000, help="requests per row and repetition")
    args = p.parse_args()
    bins = {
        "server": os.path.join(RELEASE, "server"),
        "client": os.path.join(RELEASE, "client"),
        "load": os.path.join(RELEASE, "load"),
        "resp_load": os.path.join(RELEASE, "examples", "resp_load"),
        "redis": "/usr/bin/redis-server",
        "nutcracker": "/usr/sbin/nutcracker",
    }
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            print(f"balancerbench: {name} not found at {path}", file=sys.stderr)
            return 2
    connections = [int(c) for c in args.connections.split(",")]
    rows = make_rows()
    results = {}
    with tempfile.TemporaryDirectory(prefix="balancerbench-") as workdir:
        procs = Processes(workdir)
        try:
            for rep in range(args.reps):
                for n in connections:
                    requests = max(1, args.total // n)
                    for row in rows[rep % len(rows):] + rows[:rep % len(rows)]:
                        run = run_redis if row.get("redis") else run_factory
                        try:
                            r = run(procs, bins, row, n, requests)
                        finally:
                            procs.stop_all()
                        results.setdefault((row["workload"], row["name"], n), []).append(r)
        finally:
            procs.stop_all()
    print(f"balancerbench: {args.reps} reps, {args.total} requests per row, medians; "
          f"commit {git_revision()}")
    print(f"{'workload':<6} {'conns':>5} {'row':<26} {'ops/s':>10} {'mean us':>9} "
          f"{'p50 us':>8} {'p99 us':>8}  extra")
    for (workload, name, n), rs in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        m = median_row(rs)
        extra = "; ".join(f"{k} {m[k]}" for k in ("hit ratio", "shares") if k in m)
        print(f"{workload:<6} {n:>5} {name:<26} {m['ops']:>10.0f} {m['mean']:>9.1f} "
              f"{m['p50']:>8.1f} {m['p99']:>8.1f}  {extra}")
    return 0


def git_revision():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"balancerbench: {e}", file=sys.stderr)
        sys.exit(1)
