#!/usr/bin/env python3
"""A/B benchmark: two or more builds of our `server`, run interleaved under
the load of scripts/loadbench.py, to decide whether a change pays.

    scripts/abbench.py [--reps N] [--pin] [--sizes 1,3] [--workload write]
                       [--fsync] NAME=SERVER NAME=SERVER [...]

Each NAME=SERVER is a label and a server binary (copy target/release/server
aside before rebuilding with the change). Every repetition runs each
(variant, cluster size) pair once, on a fresh cluster, in an order rotated
each repetition, so that a machine that slows down or speeds up during the
run weighs on every variant alike. The clusters, the warm-up, the client
load and the statistics are loadbench's (same module): the release
`client` drives them, `--fsync` gives every server `--data-dir DIR --fsync
always` (directories under target/, removed after each run).

The table gives each row's medians and every repetition's ops/s, then the
ratio of each variant to the first one for the same cluster size: the
ratio of the medians and the range of the per-repetition ratios. A change
whose range straddles 1.00 has not been shown to help or hurt. Only loopback
addresses; every process is killed by its PID when its run ends.
"""

import argparse
import os
import signal
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadbench as lb  # noqa: E402  (the path must be set first)


def parse_args():
    p = argparse.ArgumentParser(
        description="Interleaved A/B runs of several server builds under the loadbench load.",
        epilog="Example: cp target/release/server /tmp/base-server; (change, cargo build "
        "--release); scripts/abbench.py --pin base=/tmp/base-server new=target/release/server",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions, interleaved (default 5)")
    p.add_argument("--pin", action="store_true", help="run every process under taskset -c 0")
    p.add_argument("--sizes", default="1,3", help="cluster sizes, comma-separated (default 1,3)")
    p.add_argument("--workload", choices=sorted(lb.WORKLOADS), default="write",
                   help="the loadbench workload (default write)")
    p.add_argument("--fsync", action="store_true",
                   help="every server with --data-dir DIR --fsync always")
    p.add_argument("--client", default=os.path.join(lb.RELEASE, "client"), help="our client")
    p.add_argument("variants", nargs="+", metavar="NAME=SERVER",
                   help="a label and a server binary; the first is the baseline")
    args = p.parse_args()
    args.variants = [parse_variant(p, v) for v in args.variants]
    if len(args.variants) < 2:
        p.error("give at least two NAME=SERVER variants")
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes: expected numbers like 1,3, got {args.sizes!r}")
    if not args.sizes or any(s < 1 or s > 9 for s in args.sizes):
        p.error("--sizes: each cluster size must be 1 to 9")
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return args


def parse_variant(parser, text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        parser.error(f"expected NAME=SERVER, got {text!r}")
    if not os.access(path, os.X_OK):
        parser.error(f"{name}: no executable server at {path}")
    return name, os.path.abspath(path)


def make_rows(args):
    rows = []
    for size in args.sizes:
        for name, binary in args.variants:
            row = lb.Row(args.workload, f"{name}, {lb.servers(size)}", "factory", size, args.fsync)
            row.variant, row.binary = name, binary
            rows.append(row)
    return rows


def run(rows, args, procs):
    data_base = os.path.join(lb.ROOT, "target") if args.fsync else None
    for rep, row in lb.interleaved(rows, args.reps):
        bins = {"server": row.binary, "client": args.client}
        row.results.append(lb.run_row(row, bins, procs, data_base))
        print(f"  rep {rep + 1}/{args.reps}  {row.name:<30} {row.results[-1][0]:>10,.0f} ops/s",
              file=sys.stderr, flush=True)


def print_table(rows):
    header = f"{'row':<30} {'ops/s':>10} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9}  every rep"
    print(header)
    print("-" * len(header))
    for row in rows:
        ops, mean, p50, p99 = lb.medians(row)
        every = " ".join(f"{r[0]:,.0f}" for r in row.results)
        print(f"{row.name:<30} {ops:>10,.0f} {mean:>9.1f} {p50:>9.1f} {p99:>9.1f}  {every}")


def print_ratios(rows, baseline):
    print()
    print(f"each variant / {baseline}, same cluster size: ratio of medians (range per rep)")
    base = {row.size: row for row in rows if row.variant == baseline}
    for row in rows:
        if row.variant == baseline:
            continue
        ref = base[row.size]
        per_rep = [a[0] / b[0] for a, b in zip(row.results, ref.results) if b[0] > 0]
        ref_ops = lb.medians(ref)[0]
        if not per_rep or ref_ops <= 0:
            print(f"{row.name:<30} (no ops/s to divide by)")
            continue
        ratio = lb.medians(row)[0] / ref_ops
        print(f"{row.name:<30} {ratio:>6.2f}  ({min(per_rep):.2f}-{max(per_rep):.2f})")


def main():
    args = parse_args()
    if not os.access(args.client, os.X_OK):
        sys.exit(f"abbench: client binary {args.client} not found; run `make loadbench`")
    rows = make_rows(args)
    procs = lb.Processes(args.pin)
    signal.signal(signal.SIGTERM, lb.on_sigterm)
    try:
        run(rows, args, procs)
    except lb.BenchError as e:
        sys.exit(f"abbench: {e}")
    except KeyboardInterrupt:
        sys.exit("abbench: interrupted")
    finally:
        procs.stop_all()
    pin = "every process pinned to CPU 0" if args.pin else "unpinned"
    fsync = ", --fsync always" if args.fsync else ""
    customers, requests, _ = lb.WORKLOADS[args.workload]
    print(f"abbench: {args.workload}, {customers} customers x {requests:,} requests, {pin}{fsync},"
          f" {args.reps} reps (medians)")
    print_table(rows)
    print_ratios(rows, args.variants[0][0])


if __name__ == "__main__":
    main()
