#!/usr/bin/env python3
"""Runs the README's commands as a user would type them (make test runs it).

Each shell block of the README that is preceded by a line
`<!-- readme-check: NAME -->` is run here, with only what must differ on a
shared machine changed: the example ports 7000-7002 become free loopback
ports, `/tmp/fN` and `$HOME/.local` become temporary directories, and
`./server` / `./client` are the binaries `make` left in the tree. A line
ending in `&` starts a server (the script waits until it listens, as a
person reading its log would); `kill %...` stops them. Every other line
must exit 0, and print what its comment says after `prints `, if it says;
`export NAME=VALUE` carries over to the lines after it. The C
program shown in the README is written to ./app.c (removed afterwards) for
the `pkgconfig` and `intree` blocks, which run it against a server started
here.

usage: readme_check.py [README]      (run from the repository root, after make)
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

DEADLINE_S = 20.0
EXAMPLE_PORTS = ("7000", "7001", "7002")


def blocks(readme):
    """{name: [lines]} of the marked ```sh blocks, and the ```c blocks in order."""
    marked, c_blocks = {}, []
    pending, lang, body = None, None, None
    for line in readme.splitlines():
        m = re.match(r"<!-- readme-check: (\w+) -->", line)
        if m:
            pending = m.group(1)
        elif body is None and line.startswith("```"):
            lang, body = line[3:].strip(), []
        elif body is not None and line.startswith("```"):
            if lang == "c":
                c_blocks.append("\n".join(body) + "\n")
            if pending and lang == "sh":
                marked[pending] = body
            pending, lang, body = None, None, None
        elif body is not None:
            body.append(line)
    return marked, c_blocks


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def listening(port, proc):
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Run:
    """One block's substitutions, its background servers and its output."""

    def __init__(self, tmp, ports):
        self.tmp, self.ports, self.procs = tmp, ports, []
        self.env = dict(os.environ)

    def subst(self, line):
        for example, port in zip(EXAMPLE_PORTS, self.ports):
            line = line.replace(example, port)
        line = re.sub(r"/tmp/(f\d)", lambda m: f"{self.tmp}/{m.group(1)}", line)
        return line.replace("$HOME", self.tmp)

    def line(self, raw):
        cmd = self.subst(raw.split(" #")[0].strip())
        comment = raw.split(" #", 1)[1] if " #" in raw else ""
        # "... prints A B": the command's output, up to spacing, must be "A B".
        expected = comment.split("prints ", 1)[1].strip() if "prints " in comment else None
        if not cmd:
            return
        print("$", raw.strip(), flush=True)
        if cmd.startswith("export "):
            name, _, value = cmd[len("export "):].partition("=")
            self.env[name] = value
        elif cmd.startswith("kill %"):
            self.stop()
        elif cmd.endswith("&"):
            self.start(cmd[:-1].strip())
        else:
            out = subprocess.run(cmd, shell=True, cwd=os.getcwd(), env=self.env,
                                 capture_output=True, text=True, timeout=120)
            sys.stdout.write(out.stdout)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"readme-check: '{raw.strip()}' exited {out.returncode}")
            if expected is not None and " ".join(out.stdout.split()) != expected:
                raise SystemExit(f"readme-check: '{raw.strip()}' printed {out.stdout!r}, "
                                 f"the README says {expected!r}")

    def start(self, cmd):
        log = open(f"{self.tmp}/server{len(self.procs)}.log", "w")
        proc = subprocess.Popen(shlex.split(cmd), env=self.env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        port = cmd.split()[1]
        if not listening(port, proc):
            self.stop()
            with open(log.name) as f:
                sys.stderr.write(f.read())
            raise SystemExit(f"readme-check: '{cmd}' did not start listening")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


def run_block(name, lines, setup=None):
    print(f"== readme-check: {name}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"readme-{name}-") as tmp:
        run = Run(tmp, free_ports(3))
        try:
            if setup:
                setup(run)
            for line in lines:
                run.line(line)
        finally:
            run.stop()


def with_server_and_app(c_program):
    """Setup for the C blocks: app.c in the working directory, a server on the first port."""
    def setup(run):
        with open("app.c", "w") as f:
            f.write(run.subst(c_program))
        run.start(f"target/release/server {run.ports[0]} 0 0 --bind 127.0.0.1")
    return setup


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "README.md"
    with open(path) as f:
        marked, c_blocks = blocks(f.read())
    for need in ("cluster", "install", "pkgconfig", "intree"):
        if need not in marked:
            raise SystemExit(f"readme-check: no block marked '{need}' in {path}")
    if not c_blocks:
        raise SystemExit(f"readme-check: no C program in {path}")
    for tool in ("cc", "pkg-config"):
        if shutil.which(tool) is None:
            raise SystemExit(f"readme-check: {tool} not found")
    for leftover in ("app.c", "app"):
        if os.path.lexists(leftover):
            raise SystemExit(f"readme-check: ./{leftover} exists; move it away first")
    try:
        for name in ("cluster", "install"):
            run_block(name, marked[name])
        for name in ("pkgconfig", "intree"):
            run_block(name, marked[name], with_server_and_app(c_blocks[0]))
    finally:
        for leftover in ("app.c", "app"):
            if os.path.lexists(leftover):
                os.remove(leftover)
    print("readme-check: every README command ran as written")


if __name__ == "__main__":
    main()
