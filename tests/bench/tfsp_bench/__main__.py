"""`make bench`: latency, throughput, deployment times and footprint of the local stack.

Run after `make demo`. Writes results/benchmarks.{md,json} and results/latency.png and prints the
markdown. Exit status 1 if a step fails or a load run saw errors (its figures are then suspect).
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import ab, deploy, floor, footprint, payloads, report
from .loadgen import LoadContainer, Target, run
from .stats import BenchError, LoadResult

REPO = deploy.REPO
GPU_HOSTS = ["tfsp-demo-tfs1", "tfsp-demo-tfs2"]
WEB_HOSTS = ["tfsp-demo-web1", "tfsp-demo-web2"]
VANTAGE = WEB_HOSTS[0]
DIRECT_HOST = GPU_HOSTS[0]
# The vantage host's own nginx, by a name it serves (it rejects TLS for unknown names).
API_URL = "https://localhost/api/v1/predict"
API_HOST = ""
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per run (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds before each run (default 3)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument(
        "--paths",
        default=",".join(report.LABELS),
        help=f"comma-separated paths to measure (default: all of {', '.join(report.LABELS)})",
    )
    parser.add_argument("--skip-deploy", action="store_true", help="no site.yml re-run and no rollout")
    parser.add_argument(
        "--skip-footprint", action="store_true", help="no naive tensorflow-serving-api install"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "results", help="results folder (default results/)"
    )
    parser.add_argument("--readme", action="store_true", help="also put the figures into README.md")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the web app of commit REV against the deployed one, alternating (A/B)",
    )
    parser.add_argument("--ab-rounds", type=int, default=3, help="rounds per level of the A/B (default 3)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the floor of the web tier: gunicorn alone and with one raw gRPC call (floor.py)",
    )
    args = parser.parse_args(argv)
    try:
        args.levels = sorted({int(c) for c in args.concurrency.split(",")})
    except ValueError:
        parser.error(f"--concurrency takes integers separated by commas, not {args.concurrency!r}")
    args.paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(args.paths) - set(report.LABELS))
    if unknown or not args.paths:
        parser.error(f"unknown paths {unknown}: choose from {', '.join(report.LABELS)}")
    if not args.levels or min(args.levels) < 1 or args.seconds < 1 or args.warmup < 0 or args.ab_rounds < 1:
        parser.error("concurrency levels, --seconds and --ab-rounds must be at least 1, --warmup at least 0")
    return args


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def check_stack() -> None:
    for host in GPU_HOSTS + WEB_HOSTS:
        state = run(["docker", "inspect", "-f", "{{.State.Running}}", host], check=False).stdout.strip()
        if state != "true":
            raise BenchError(f"{host} is not running: bring the local stack up with `make demo` first")


def set_protocol(protocol: str, log_dir: Path) -> None:
    """Switch the vantage web host's client to grpc or rest, the way an operator would."""
    say(f"configuring {VANTAGE} with calculator_web_tf_serving_protocol={protocol}")
    # The measurements run with the stack's mutual TLS off (set_plaintext): the host stays so, for
    # either client (REST has no TLS anyway).
    deploy.playbook(
        "playbooks/web_hosts.yml", "--limit", VANTAGE, "-e", f"calculator_web_tf_serving_protocol={protocol}",
        "-e", "stack_tls_enabled=false", log=log_dir / f"web-{protocol}.log",
    )  # fmt: skip


def set_plaintext(plaintext: bool, log_dir: Path) -> None:
    """Turn the stack's mutual TLS off for the measurements, and back to the inventory's setting after.

    h2load, the direct gRPC load generator, presents no client certificate, and TF Serving with
    client_verify serves only the web hosts': so every path is measured in plaintext, as in the
    README's earlier runs, and the figures stay comparable. Switched as an operator would in a
    maintenance window: serving hosts, then web hosts, each tier in one wave (calls fail between
    the two; no measurement runs then).
    """
    settings: dict = {
        "tf_serving_waves": ["100%"],
        "web_hosts_waves": ["100%"],
        "waves_allow_whole_tier": True,
    }
    if plaintext:
        settings["stack_tls_enabled"] = False
    state = "off" if plaintext else "back to the inventory's setting"
    say(f"turning the stack's mutual TLS {state} (serving hosts, then web hosts, one wave each)")
    for book in ("playbooks/gpu_hosts.yml", "playbooks/web_hosts.yml"):
        log = log_dir / f"tls-{'off' if plaintext else 'restore'}-{Path(book).stem}.log"
        deploy.playbook(book, "-e", json.dumps(settings), log=log)


def api_answer(load: LoadContainer) -> dict:
    body = load.http_call(API_URL, "predict-api.json", API_HOST)
    if payloads.django_api_answer(body) != payloads.EXPECTED:
        raise BenchError(f"the web API answered {body!r}")
    return json.loads(body)


def wait_protocol(load: LoadContainer, protocol: str, timeout: float = 60) -> None:
    """Wait until the API answers through the wanted client (REST answers carry no model version)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            version = api_answer(load).get("model_version")
            if (version is None) == (protocol == "rest"):
                return
        except BenchError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"the web API on {VANTAGE} does not answer through its {protocol} client")
        time.sleep(0.5)


def measure(
    load: LoadContainer, target: Target, levels: list[int], args, answer_bytes: int
) -> list[LoadResult]:
    out = []
    for c in levels:
        say(f"{target.label}: concurrency {c}, {args.warmup} s warm-up + {args.seconds} s")
        if target.key == "grpc_direct":
            if args.warmup:
                load.h2load(target, c, args.warmup, answer_bytes)
            result = load.h2load(target, c, args.seconds, answer_bytes)
        else:
            body = "predict-rest.json" if target.key == "rest_direct" else "predict-api.json"
            host = "" if target.key == "rest_direct" else API_HOST
            if args.warmup:
                load.wrk(target, c, args.warmup, body, host)
            result = load.wrk(target, c, args.seconds, body, host)
        say(
            f"  p50 {result.p50_ms:.2f} ms, p90 {result.p90_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
            f"{result.throughput:.0f} req/s, {result.errors} errors"
        )
        out.append(result)
    return out


def measure_all(args, log_dir: Path, results: list[LoadResult], direct, rest, web_grpc, web_rest) -> None:
    """Every path at every level, into `results` (the stack in plaintext, see set_plaintext)."""
    with LoadContainer(VANTAGE) as load:
        _, version, answer_bytes = load.grpc_call(f"http://{DIRECT_HOST}:8500")
        say(f"gRPC Predict verified: 3 + 4 = 7 from version {version} ({answer_bytes}-byte answer)")
        if payloads.rest_predict_answer(load.http_call(rest.url, "predict-rest.json")) != payloads.EXPECTED:
            raise BenchError("the direct REST predict did not answer 7")
        wait_protocol(load, "grpc")
        # Level by level, so the paths compared at one level are measured minutes apart at most.
        for c in args.levels:
            for target in (direct, rest, web_grpc):
                if target.key in args.paths:
                    results += measure(load, target, [c], args, answer_bytes)
        if web_rest.key in args.paths:
            set_protocol("rest", log_dir)
            try:
                wait_protocol(load, "rest")
                results += measure(load, web_rest, args.levels, args, answer_bytes)
            finally:
                set_protocol("grpc", log_dir)
            wait_protocol(load, "grpc")


def versions_available(load: LoadContainer):
    def poll(host: str) -> set[int]:
        done = load.exec(
            "curl", "-s", "--max-time", "2", f"http://{host}:8501/v1/models/calculator", check=False
        )
        try:
            statuses = json.loads(done.stdout)["model_version_status"]
        except (ValueError, KeyError, TypeError):
            return set()
        return {int(s["version"]) for s in statuses if s.get("state") == "AVAILABLE"}

    return poll


def ansible_settings() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    return (
        "connection community.docker.docker, "
        f"pipelining {cfg.get('connection', 'pipelining', fallback='off')}, "
        f"gathering {cfg.get('defaults', 'gathering', fallback='implicit')}, "
        f"fact caching {cfg.get('defaults', 'fact_caching', fallback='memory')}, "
        f"forks {cfg.get('defaults', 'forks', fallback='5')}"
    )


def update_readme(markdown: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise BenchError(f"README.md has no {README_BEGIN} ... {README_END} section")
    body = markdown.split("\n", 2)[2]  # without the title
    body = re.sub(r"^## ", "#### ", body, flags=re.MULTILINE)
    start = text.index(README_BEGIN) + len(README_BEGIN)
    readme.write_text(text[:start] + "\n" + body.strip() + "\n" + text[text.index(README_END) :])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = REPO / "build/bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    check_stack()
    run(["docker", "image", "inspect", "tfsp/bench:latest"])
    results: list[LoadResult] = []
    data: dict = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "concurrency": args.levels,
        "vantage": VANTAGE,
        "machine": report.machine(),
        "ansible_settings": ansible_settings(),
    }
    direct = Target("grpc_direct", report.LABELS["grpc_direct"], f"http://{DIRECT_HOST}:8500")
    rest = Target(
        "rest_direct", report.LABELS["rest_direct"], f"http://{DIRECT_HOST}:8501/v1/models/calculator:predict"
    )
    web_grpc = Target("django_grpc", report.LABELS["django_grpc"], API_URL)
    web_rest = Target("django_rest", report.LABELS["django_rest"], API_URL)
    set_plaintext(True, log_dir)
    try:
        measure_all(args, log_dir, results, direct, rest, web_grpc, web_rest)
        if args.baseline:
            # In plaintext too: an app from before mutual TLS could not call the servers otherwise.
            data["ab"] = ab.run_ab(VANTAGE, args.baseline, args.levels, args.seconds, args.ab_rounds, say)
        if args.floor:
            levels = [c for c in args.levels if c in floor.TARGET_LEVELS] or args.levels
            data["floor"] = floor.run_floor(VANTAGE, direct, levels, args.seconds, args.ab_rounds, say)
    finally:
        set_plaintext(False, log_dir)
    with LoadContainer(VANTAGE) as load:
        wait_protocol(load, "grpc")
        # The order of the table: by path, then concurrency.
        order = list(report.LABELS)
        results.sort(key=lambda r: (order.index(r.target), r.concurrency))
        if not args.skip_deploy:
            data["deploy"] = {"first_run": deploy.first_run()}
            say("site.yml re-run on the deployed stack (must change nothing)")
            data["deploy"]["rerun"] = deploy.rerun(log_dir)
            say("rolling out a new model version with playbooks/deploy_model.yml")
            data["deploy"]["rollout"] = deploy.rollout(
                REPO / "build/demo-models", "calculator", GPU_HOSTS, versions_available(load), log_dir
            )
    data["footprint"] = {"web": footprint.web_host_venv(VANTAGE), "standin_image": footprint.standin_image()}
    if not args.skip_footprint:
        say("sizing a naive venv with tensorflow-serving-api (pulls TensorFlow)")
        data["footprint"]["naive"] = footprint.naive_venv(f"tensorflow-serving-api=={tf_serving_api_pin()}")
    data["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    paths = report.write(args.out, data, results)
    markdown = paths["markdown"].read_text()
    print(markdown)
    if args.readme:
        update_readme(markdown)
    shown = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths.values()]
    say(f"wrote {', '.join(shown)}")
    ab_errors = any(
        arm["errors"]
        for level in data.get("ab", {}).get("levels", {}).values()
        for arm in (level["baseline"], level["candidate"])
    )
    return 1 if ab_errors or any(r.errors for r in results) else 0


def tf_serving_api_pin() -> str:
    """The tensorflow-serving-api version of the controller's lock file (the one the protos come from)."""
    for line in (REPO / "requirements/dev.lock.txt").read_text().splitlines():
        if line.lower().startswith("tensorflow-serving-api=="):
            return line.split("==", 1)[1].strip()
    raise BenchError("tensorflow-serving-api is not pinned in requirements/dev.lock.txt")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        sys.exit(1)
