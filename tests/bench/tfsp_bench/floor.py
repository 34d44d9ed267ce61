"""`make bench BENCH_ARGS="--floor"`: the least gunicorn and grpcio can add here, beside the app.

The web-tier targets are ratios against a direct gRPC call. Whether the calculator's app can meet
them depends on what its process model costs before any app code runs, so this measures, in the
same run and the same way (wrk through the vantage host's nginx, keep-alive, on a local port):

- ``hello``: gunicorn answering a constant (``floor_app.hello``): nginx and gunicorn alone;
- ``call``: the same plus one raw gRPC Predict (``floor_app.call``): the floor of any Python app
  under gunicorn that makes the web tier's call with grpcio;
- ``app``: the deployed calculator app, on the same footing.

Each arm is a transient gunicorn on the vantage host with the host's own gunicorn.conf.py (worker
class and count) and virtualenv; everything added is removed afterwards.
"""

from __future__ import annotations

from pathlib import Path

from . import ab, payloads
from .loadgen import LoadContainer, Target, run
from .stats import LoadResult

WORK = "/opt/tfsp-floor"
CONF = "/etc/nginx/conf.d/tfsp-floor.conf"
ARMS = {"hello": 18081, "call": 18082, "app": 18083}
HERE = Path(__file__).resolve().parent
DIRECT = "direct"
# The levels of #20's two targets: measured by default, the others only when asked for alone.
TARGET_LEVELS = (1, 32)


def _app_args(arm: str, target: str) -> list[str]:
    """systemd-run arguments that make the host's gunicorn serve `arm`."""
    if arm == "app":
        return []  # the deployed app: gunicorn.conf.py's wsgi_app
    request = payloads.grpc_predict_body()[5:].hex()  # the bare message, without gRPC's framing
    return [
        f"--setenv=PYTHONPATH={WORK}",
        f"--setenv=FLOOR_TARGET={target}",
        f"--setenv=FLOOR_REQUEST={request}",
    ]


def start(host: str, target: str) -> None:
    """The arms and their nginx ports on `host`; `target` is the TF Serving host:port they call."""
    ab.docker_exec(host, "mkdir", "-p", *(f"{WORK}/metrics-{arm}" for arm in ARMS))
    run(["docker", "cp", str(HERE / "floor_app.py"), f"{host}:{WORK}/floor_app.py"])
    for arm in ARMS:
        app = [] if arm == "app" else [f"floor_app:{arm}"]
        ab.docker_exec(
            host, "systemd-run", f"--unit=tfsp-floor-{arm}",
            f"--property=EnvironmentFile={ab.CONFIG_DIR}/env",
            f"--setenv=PROMETHEUS_MULTIPROC_DIR={WORK}/metrics-{arm}", *_app_args(arm, target),
            f"--working-directory={ab.APP_DIR}", f"{ab.APP_DIR}/venv/bin/gunicorn", "--config",
            f"{ab.CONFIG_DIR}/gunicorn.conf.py", "--bind", f"unix:{WORK}/{arm}.sock",
            "--access-logfile", "/dev/null", *app,
        )  # fmt: skip
    ab.install_nginx_snippet(host, CONF, ab.nginx_snippet(ARMS, WORK, "tfsp_floor"))


def stop(host: str) -> None:
    for arm in ARMS:
        ab.docker_exec(host, "systemctl", "stop", f"tfsp-floor-{arm}", check=False)
    ab.docker_exec(host, "rm", "-rf", CONF, WORK, check=False)
    ab.docker_exec(host, "systemctl", "reload", "nginx", check=False)


def summarize(runs: dict[int, dict[str, list[LoadResult]]]) -> dict:
    """Per level: each arm's median p50, p99 and throughput, and its ratios to the direct call's."""
    out: dict = {}
    for c, arms in runs.items():
        level = {arm: ab.medians(results) for arm, results in arms.items()}
        direct = level[DIRECT]
        for arm in level:
            level[arm]["p50_ratio"] = level[arm]["p50_ms"] / direct["p50_ms"]
            level[arm]["throughput_share"] = level[arm]["throughput"] / direct["throughput"]
        out[str(c)] = level
    return out


def measure(
    load: LoadContainer, direct: Target, answer_bytes: int, levels: list[int], seconds: int, rounds: int, say
) -> dict[int, dict[str, list[LoadResult]]]:
    """Rounds of the direct call and every arm, in alternating order, at each level."""
    targets = {
        arm: Target(f"floor_{arm}", arm, f"http://127.0.0.1:{port}{ab.API_PATH}")
        for arm, port in ARMS.items()
    }
    for target in targets.values():
        ab.wait_ready(load, target.url)

    def once(arm: str, c: int, secs: int) -> LoadResult:
        if arm == DIRECT:
            return load.h2load(direct, c, secs, answer_bytes)
        return load.wrk(targets[arm], c, secs, "predict-api.json")

    order = [DIRECT, *ARMS]
    runs: dict[int, dict[str, list[LoadResult]]] = {c: {arm: [] for arm in order} for c in levels}
    for c in levels:
        for arm in order:  # warm-up
            once(arm, c, 3)
        for index in range(rounds):
            for arm in order if index % 2 == 0 else reversed(order):
                result = once(arm, c, seconds)
                say(
                    f"  floor {arm} c={c} round {index + 1}: p50 {result.p50_ms:.2f} ms, "
                    f"p99 {result.p99_ms:.2f} ms, {result.throughput:.0f} req/s"
                )
                runs[c][arm].append(result)
    return runs


def run_floor(host: str, direct: Target, levels: list[int], seconds: int, rounds: int, say) -> dict:
    """Start the arms on `host`, measure them against `direct` (h2load), clean up; the summary."""
    say(f"floor of the web tier on {host}: direct gRPC, hello, raw gRPC call and the app, alternating")
    try:
        start(host, direct.url.removeprefix("http://"))
        with LoadContainer(host, name="tfsp-bench-floor") as load:
            _, _, answer_bytes = load.grpc_call(direct.url)
            runs = measure(load, direct, answer_bytes, levels, seconds, rounds, say)
    finally:
        stop(host)
    return {"host": host, "seconds": seconds, "rounds": rounds, "levels": summarize(runs)}
