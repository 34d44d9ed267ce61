"""`make bench BENCH_ARGS="--baseline REV"`: the web app of an earlier commit against today's, same run.

Figures of different days are not comparable on a shared VM (the README's section on how much the
figures move), so "no regression" is shown side by side: on the vantage web host, two extra
gunicorn servers run with the host's own settings (its gunicorn.conf.py and environment file), one
with the app as deployed (the candidate) and one with the app of commit REV put in front of it on
PYTHONPATH (the baseline; the dependencies are the deployed ones, so only the app's code differs).
The host's nginx proxies a local port to each, as its site does (keep-alive, X-Forwarded-Proto
https), and wrk alternates between the two arms, round after round, at each concurrency level.

Everything added is removed afterwards: the two transient systemd units, the nginx snippet and
the baseline's files.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .deploy import REPO
from .loadgen import LoadContainer, Target, run
from .stats import BenchError, LoadResult

WORK = "/opt/tfsp-ab"
CONF = "/etc/nginx/conf.d/tfsp-ab.conf"
ARMS = {"baseline": 18091, "candidate": 18092}
API_PATH = "/api/v1/predict"
APP_DIR = "/opt/calculator-web"
CONFIG_DIR = "/etc/calculator-web"


def nginx_snippet(arms: dict[str, int], work: str, prefix: str) -> str:
    """An nginx port per arm, proxying to the arm's socket in `work` as the site does."""
    blocks = []
    for arm, port in arms.items():
        blocks.append(
            f"upstream {prefix}_{arm} {{ server unix:{work}/{arm}.sock; keepalive 16; }}\n"
            f"server {{\n"
            f"    listen 127.0.0.1:{port};\n"
            f"    location / {{\n"
            f"        proxy_pass http://{prefix}_{arm};\n"
            f"        proxy_http_version 1.1;\n"
            f'        proxy_set_header Connection "";\n'
            f"        proxy_set_header Host localhost;\n"
            f"        proxy_set_header X-Forwarded-Proto https;\n"
            f"    }}\n"
            f"}}\n"
        )
    return "".join(blocks)


def install_nginx_snippet(host: str, path: str, text: str) -> None:
    """Put `text` at `path` on `host`, check nginx's configuration and reload it."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as snippet:
        snippet.write(text)
        snippet.flush()
        run(["docker", "cp", snippet.name, f"{host}:{path}"])
    docker_exec(host, "chmod", "0644", path)
    docker_exec(host, "nginx", "-t")
    docker_exec(host, "systemctl", "reload", "nginx")


def docker_exec(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["docker", "exec", host, *args], check=check)


def baseline_wheel(rev: str, out: Path) -> Path:
    """The app of commit `rev` as a wheel (built from `git archive`, no dependencies)."""
    src = out / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "django_app"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise BenchError(f"--baseline {rev}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    run(
        [
            str(REPO / ".venv/bin/pip"),
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(out / "wheel"),
            str(src / "django_app"),
        ]
    )
    wheels = sorted((out / "wheel").glob("*.whl"))
    if len(wheels) != 1:
        raise BenchError(f"building the app of {rev} gave {len(wheels)} wheels")
    return wheels[0]


def start(host: str, wheel: Path) -> None:
    """The two arms and their nginx ports on `host`."""
    docker_exec(
        host, "mkdir", "-p", f"{WORK}/baseline-lib", f"{WORK}/metrics-baseline", f"{WORK}/metrics-candidate"
    )
    run(["docker", "cp", str(wheel), f"{host}:{WORK}/{wheel.name}"])
    docker_exec(
        host,
        f"{APP_DIR}/venv/bin/python",
        "-m",
        "zipfile",
        "-e",
        f"{WORK}/{wheel.name}",
        f"{WORK}/baseline-lib",
    )
    for arm in ARMS:
        python_path = [f"--setenv=PYTHONPATH={WORK}/baseline-lib"] if arm == "baseline" else []
        docker_exec(
            host, "systemd-run", f"--unit=tfsp-ab-{arm}", f"--property=EnvironmentFile={CONFIG_DIR}/env",
            f"--setenv=PROMETHEUS_MULTIPROC_DIR={WORK}/metrics-{arm}", *python_path,
            f"--working-directory={APP_DIR}", f"{APP_DIR}/venv/bin/gunicorn", "--config",
            f"{CONFIG_DIR}/gunicorn.conf.py", "--bind", f"unix:{WORK}/{arm}.sock",
            "--access-logfile", "/dev/null",
        )  # fmt: skip
    install_nginx_snippet(host, CONF, nginx_snippet(ARMS, WORK, "tfsp_ab"))


def stop(host: str) -> None:
    for arm in ARMS:
        docker_exec(host, "systemctl", "stop", f"tfsp-ab-{arm}", check=False)
    docker_exec(host, "rm", "-rf", CONF, WORK, check=False)
    docker_exec(host, "systemctl", "reload", "nginx", check=False)


def wait_ready(load: LoadContainer, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            load.http_call(url, "predict-api.json")
            return
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def measure(load: LoadContainer, levels: list[int], seconds: int, rounds: int, say) -> dict:
    """Alternating wrk runs; per level and arm, every round's figures and their medians."""
    targets = {
        arm: Target(f"ab_{arm}", arm, f"http://127.0.0.1:{port}{API_PATH}") for arm, port in ARMS.items()
    }
    for target in targets.values():
        wait_ready(load, target.url)
    runs: dict[int, dict[str, list[LoadResult]]] = {c: {arm: [] for arm in ARMS} for c in levels}
    for c in levels:
        for target in targets.values():  # warm-up of both arms
            load.wrk(target, c, 3, "predict-api.json")
        for index in range(rounds):
            # Alternate which arm goes first, so neither always follows the other.
            order = list(targets.items()) if index % 2 == 0 else list(reversed(targets.items()))
            for arm, target in order:
                result = load.wrk(target, c, seconds, "predict-api.json")
                say(
                    f"  {arm} c={c} round {index + 1}: "
                    f"p50 {result.p50_ms:.2f} ms, {result.throughput:.0f} req/s"
                )
                runs[c][arm].append(result)
    return summarize(runs)


def medians(results: list[LoadResult]) -> dict:
    """One arm's rounds at one level: median p50, p99 and throughput, errors summed, every round."""
    return {
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "throughput": statistics.median(r.throughput for r in results),
        "errors": sum(r.errors for r in results),
        "rounds": [r.as_dict() for r in results],
    }


def summarize(runs: dict[int, dict[str, list[LoadResult]]]) -> dict:
    """Medians per level and arm, and the candidate's change against the baseline."""
    out: dict = {}
    for c, arms in runs.items():
        level = {arm: medians(results) for arm, results in arms.items()}
        base, cand = level["baseline"], level["candidate"]
        level["p50_change"] = cand["p50_ms"] / base["p50_ms"] - 1
        level["throughput_change"] = cand["throughput"] / base["throughput"] - 1
        out[str(c)] = level
    return out


def run_ab(host: str, rev: str, levels: list[int], seconds: int, rounds: int, say) -> dict:
    resolved = run(["git", "-C", str(REPO), "rev-parse", "--short", rev]).stdout.strip()
    say(f"A/B of the web app: baseline {resolved} against the deployed app, on {host}")
    with tempfile.TemporaryDirectory(prefix="tfsp-ab-") as tmp:
        wheel = baseline_wheel(rev, Path(tmp))
        try:
            start(host, wheel)
            with LoadContainer(host, name="tfsp-bench-ab") as load:
                levels_out = measure(load, levels, seconds, rounds, say)
        finally:
            stop(host)
    return {"baseline": resolved, "host": host, "seconds": seconds, "rounds": rounds, "levels": levels_out}
