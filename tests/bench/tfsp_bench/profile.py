"""`make profile`: where a web request's time and CPU go, on the local stack under wrk.

Run after `make demo`, as root (py-spy attaches to the web host's gunicorn, a process of another
user in a container). Two load runs of the JSON API through nginx, from the vantage web host's
network namespace, as `make bench` does:

1. CPU per request, by process name: every process's CPU time (from /proc, on the controller,
   which sees the containers' processes) over the run, divided by the requests wrk counted. It
   says which process (gunicorn, TF Serving, nginx, ...) spends the machine's CPU.
2. A py-spy profile of every gunicorn worker (wall clock, idle included): the top functions by
   share of the samples taken while a worker handled a request, inclusive and self.

Prints markdown and writes results/profile.md; py-spy's raw stacks go to build/profile-raw.txt.
The stack is profiled as deployed (mutual TLS between the tiers as the inventory says).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .__main__ import API_URL, VANTAGE
from .deploy import REPO
from .loadgen import LoadContainer, Target, run
from .stats import BenchError

# Where a gunicorn worker handles one request (sync and gthread workers).
REQUEST_FRAMES = ("SyncWorker.handle ", "ThreadWorker.handle ")
LINE_NUMBER = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class ProcessCpu:
    """CPU seconds one process name spent over a run."""

    name: str
    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


def parse_proc_stat(text: str) -> tuple[str, int, int]:
    """(command name, user ticks, system ticks) of one /proc/PID/stat line."""
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[11]), int(fields[12])


def cpu_snapshot(proc: Path = Path("/proc")) -> dict[str, tuple[str, int, int]]:
    """Every process's (name, user ticks, system ticks), by PID."""
    out = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                out[entry.name] = parse_proc_stat((entry / "stat").read_text())
            except (OSError, ValueError):
                continue  # gone, or not readable
    return out


def cpu_by_name(before: dict, after: dict, ticks_per_second: float) -> list[ProcessCpu]:
    """CPU spent between two snapshots by each process name (processes alive at both), most first."""
    user: collections.Counter = collections.Counter()
    system: collections.Counter = collections.Counter()
    for pid, (name, u1, s1) in after.items():
        if pid in before and before[pid][0] == name:
            user[name] += u1 - before[pid][1]
            system[name] += s1 - before[pid][2]
    names = sorted(set(user) | set(system), key=lambda n: user[n] + system[n], reverse=True)
    return [ProcessCpu(n, user[n] / ticks_per_second, system[n] / ticks_per_second) for n in names]


def _function(frame: str) -> str:
    """A py-spy frame, ``name (file.py:123)``, without its line number."""
    return LINE_NUMBER.sub(")", frame)


def top_functions(raw: str, anchors: tuple[str, ...] = REQUEST_FRAMES) -> tuple[int, list, list]:
    """From py-spy's raw output (``frame;frame;... count`` lines): samples taken while handling a
    request, and the functions by inclusive and by self share of them, most first.

    Only the frames from the request handler down count; samples outside it (a worker waiting for
    a connection) are left out.
    """
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        start = next((i for i, f in enumerate(frames) if f.startswith(anchors)), None)
        if start is None:
            continue
        n = int(count)
        total += n
        functions = [_function(f) for f in frames[start:]]
        for name in set(functions):
            inclusive[name] += n
        own[functions[-1]] += n
    if not total:
        return 0, [], []

    def shares(counter: collections.Counter) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common()]

    return total, shares(inclusive), shares(own)


def markdown(requests: int, seconds: float, cpu: list[ProcessCpu], profile, rows: int) -> str:
    samples, inclusive, own = profile
    lines = [
        "# Web tier profile",
        "",
        f"`make profile`: the JSON API (`add 3 4`) through nginx under wrk, {requests} requests in",
        f"{seconds:.0f} s for the CPU figures.",
        "",
        "## CPU per request, by process",
        "",
        "| process | CPU per request (µs) | user | system |",
        "|---|---:|---:|---:|",
    ]
    for p in cpu[:rows]:
        lines.append(
            f"| {p.name} | {p.total_s / requests * 1e6:.0f} | {p.user_s / requests * 1e6:.0f} "
            f"| {p.system_s / requests * 1e6:.0f} |"
        )
    lines += [
        "",
        f"## gunicorn workers, while handling a request ({samples} py-spy samples, wall clock)",
        "",
        "| inclusive | function |",
        "|---:|---|",
    ]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in inclusive[:rows]]
    lines += ["", "| self | function |", "|---:|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in own[:rows]]
    return "\n".join(lines) + "\n"


def gunicorn_master(host: str) -> str:
    """The host PID of the web host's gunicorn master (the oldest gunicorn process there)."""
    listing = run(["docker", "top", host, "-eo", "pid,ppid,args"]).stdout.splitlines()[1:]
    gunicorns = [line.split() for line in listing if "gunicorn" in line]
    pids = {fields[0] for fields in gunicorns}
    masters = [fields[0] for fields in gunicorns if fields[1] not in pids]
    if len(masters) != 1:
        raise BenchError(f"expected one gunicorn master on {host}, found {masters or 'none'}")
    return masters[0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make profile", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--seconds", type=int, default=15, help="seconds per load run (default 15)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples a second (default 200)")
    parser.add_argument("--rows", type=int, default=15, help="rows per table (default 15)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "results", help="results folder (default results/)"
    )
    args = parser.parse_args(argv)
    if min(args.concurrency, args.seconds, args.rate, args.rows) < 1:
        parser.error("every number must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise BenchError("py-spy is not installed: `make venv` installs it")
    if os.geteuid() != 0:
        raise BenchError("py-spy attaches to the web host's gunicorn: run `make profile` as root")
    master = gunicorn_master(VANTAGE)
    target = Target("django_grpc", "Django API", API_URL)
    args.out.mkdir(parents=True, exist_ok=True)
    raw_path = REPO / "build" / "profile-raw.txt"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    with LoadContainer(VANTAGE) as load:
        load.wrk(target, args.concurrency, 3, "predict-api.json", "")  # warm-up
        before = cpu_snapshot()
        result = load.wrk(target, args.concurrency, args.seconds, "predict-api.json", "")
        after = cpu_snapshot()
        if result.errors or not result.requests:
            raise BenchError(f"the load run saw {result.errors} errors in {result.requests} requests")
        cpu = cpu_by_name(before, after, os.sysconf("SC_CLK_TCK"))
        spy = subprocess.Popen(
            [
                py_spy, "record", "--pid", master, "--subprocesses", "--idle", "--nonblocking",
                "--rate", str(args.rate), "--duration", str(args.seconds), "--format", "raw",
                "--output", str(raw_path),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        load.wrk(target, args.concurrency, args.seconds + 2, "predict-api.json", "")
        spy_output = spy.communicate(timeout=args.seconds + 60)[0]
    if spy.returncode != 0 or not raw_path.exists():
        raise BenchError(f"py-spy failed:\n{spy_output}")
    profile = top_functions(raw_path.read_text())
    if not profile[0]:
        raise BenchError(f"py-spy took no sample inside a request handler ({raw_path})")
    text = markdown(result.requests, result.seconds, cpu, profile, args.rows)
    (args.out / "profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"profile: error: {error}", file=sys.stderr)
        sys.exit(1)
