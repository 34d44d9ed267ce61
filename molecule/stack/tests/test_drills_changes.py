"""Day-2 changes of the serving and web tiers under load: each must drop zero requests.

Every drill runs the operator's own playbook against the stack while the shared load loop
(tests/drills/loadloop.py) sends paced requests through every web host, then requires a clean
report: no failed request, every site and both serving hosts answering. The playbooks roll host by
host (playbooks/vars/waves.yml); the time of each run is written to
build/drill-results/changes.json (per run and per serving host) for the fleet arithmetic in
roles/tf_serving/README.md.

Certificate renewal (mutual TLS between the tiers) adds no playbook run: the serving tier's
gpu_hosts.yml run and the gunicorn drill's web_hosts.yml run also renew every certificate of their
tier (tls_pki_renew_days above the certificates' validity), so a renewal rolls through the serving
tier (drained restarts, in waves) and the web tier (graceful gunicorn reloads) under the same load.

Order (the stack as the earlier tests left it): batching switched on, an image change and the
renewal in one gpu_hosts.yml run (one direction each: going back is the same change, and would cost
CI another run), a gunicorn worker change through web_hosts.yml, a failed rollout of a corrupted
version followed by a restart of that server, a rollback to the previous version. The failed rollout
comes before the rollback: the rollback pins the older version on both hosts, and the failed rollout
expects both to serve the newest good version. It runs deploy_model.yml without the settings the
earlier drills set by extra vars, so on the first host the container is recreated together with the
corrupted version: the server exits at start-up and the role must quarantine the version it names in
its log, in seconds (the role's start-up watch).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import drill_failure
from loadloop import LoadLoop

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS = REPO_ROOT / "build" / "drill-results" / "changes.json"
SERVING_HOSTS = ("stack-tfs1", "stack-tfs2")
WEB_HOSTS = ("stack-web1", "stack-web2")
MODEL_BASE = "/srv/tf-serving/models"
STANDIN = "tfsp/tf-serving-standin"
GARBAGE = b"not a SavedModel protocol buffer\n"
#: Between a client's requests: about 40 requests/s in all, enough to see any gap, and CPU left for
#: the playbooks on this two-core machine.
PACE = 0.05
#: Renews every certificate a run issues (above tls_pki_valid_days): a forced renewal.
RENEW_ALL = "tls_pki_renew_days=100000"


def _checksums(host, names, path: str) -> dict[str, str]:
    return {name: host(name).file(path).sha256sum for name in names}


def _playbook(inventory_file: str, playbook: str, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run a playbook of the repository against the stack; (result, seconds)."""
    started = time.monotonic()
    result = subprocess.run(
        ["ansible-playbook", playbook, "-i", inventory_file, *extra],
        cwd=REPO_ROOT,
        # No terminal: the plays' pauses sleep instead of waiting on a prompt.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, time.monotonic() - started


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _record(drill: str, **figures) -> None:
    """Keep the drill's figures beside the other drills' (build/ is not committed)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[drill] = figures
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _container(host, name: str) -> dict:
    result = host(name).run("docker inspect tf-serving")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def _states(host, name: str) -> dict[int, str]:
    """TF Serving's version states on a serving host (asked on its own REST port)."""
    result = host(name).run("curl -sf http://$(hostname):8501/v1/models/calculator")
    if result.rc != 0:
        return {}
    return {int(v["version"]): v["state"] for v in json.loads(result.stdout)["model_version_status"]}


def _wait_available(host, name: str, version: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _states(host, name).get(version) == "AVAILABLE":
            return
        time.sleep(2)
    # What the server said last tells why: a crash loop, a load error, a port not published.
    logs = host(name).run("docker ps -a --filter name=tf-serving; docker logs --tail 30 tf-serving 2>&1")
    pytest.fail(
        f"{name}: version {version} not AVAILABLE within {timeout}s: {_states(host, name)}\n{logs.stdout}"
    )


def _controller_versions() -> list[int]:
    source = Path(os.environ["TFSP_MODEL_SOURCE"])
    return sorted(int(path.name) for path in source.iterdir() if path.name.isdigit())


def _assert_clean(load: LoadLoop, host) -> None:
    # served_by names the gRPC target the web tier called: host:port.
    problems = load.report.problems(
        min_requests=100, serving_hosts={f"{name}:8500" for name in SERVING_HOSTS}
    )
    assert not problems, drill_failure(load, problems, host)


def _figures(load: LoadLoop, runs: dict[str, float], hosts: int) -> dict:
    return {
        "requests": len(load.report.records),
        "failed": len(load.report.failures),
        "slowest_ms": round(load.report.slowest_ms),
        "seconds": {name: round(seconds, 1) for name, seconds in runs.items()},
        "seconds_per_host": {name: round(seconds / hosts, 1) for name, seconds in runs.items()},
    }


def test_bad_rollout_request_stops_before_any_host(inventory_file):
    missing = max(_controller_versions()) + 100
    result, _ = _playbook(
        inventory_file, "playbooks/deploy_model.yml", "-e", f"tf_serving_rollout_version={missing}"
    )
    assert result.returncode != 0
    # Ansible writes a failed task's message to stderr when its output is not a terminal.
    assert f"calculator version {missing} is not on the controller" in result.stdout + result.stderr
    assert "PLAY [Roll out a model version]" not in result.stdout


def test_batching_image_and_certificate_renewal_through_gpu_hosts_drop_nothing(
    inventory_file, host, site_urls
):
    """One routine change of the serving tier: batching on, a new image tag, every certificate renewed.

    Three reasons to recreate each container, rolled in one gpu_hosts.yml run (an operator's change
    window often carries several): one roll of the tier tests what three would, for a third of CI's
    time.
    """
    before = {name: _container(host, name)["State"]["StartedAt"] for name in SERVING_HOSTS}
    assert not any("--enable_batching=true" in _container(host, name)["Args"] for name in SERVING_HOSTS)
    ssl_config = "/etc/tf-serving/ssl.config"
    certificates = _checksums(host, SERVING_HOSTS, ssl_config)
    for name in SERVING_HOSTS:
        tagged = host(name).run(f"docker tag {STANDIN}:latest {STANDIN}:drill")
        assert tagged.rc == 0, tagged.stderr
    runs = {}
    with LoadLoop(sites=site_urls, clients_per_site=2, pace_seconds=PACE) as load:
        changed, runs["batching_image_renewal"] = _playbook(
            inventory_file,
            "playbooks/gpu_hosts.yml",
            "-e",
            "tf_serving_batching_enabled=true",
            "-e",
            f"tf_serving_image={STANDIN}:drill",
            "-e",
            RENEW_ALL,
        )
        _ok(changed)
    _record("batching_image_renewal", **_figures(load, runs, len(SERVING_HOSTS)))
    renewed = _checksums(host, SERVING_HOSTS, ssl_config)
    for name in SERVING_HOSTS:
        container = _container(host, name)
        assert "--enable_batching=true" in container["Args"], name
        # One direction is enough: going back is the same change (and would cost CI another run).
        assert container["Config"]["Image"] == f"{STANDIN}:drill", name
        assert container["State"]["StartedAt"] != before[name], f"{name}: TF Serving was not restarted"
        assert renewed[name] != certificates[name], f"{name}: the server's certificate was not renewed"
    _assert_clean(load, host)


def test_gunicorn_worker_change_and_certificate_renewal_through_web_hosts_drop_nothing(
    inventory_file, host, site_urls
):
    config = "/etc/calculator-web/gunicorn.conf.py"
    client_key = "/etc/calculator-web/tls/client.key"
    keys = _checksums(host, WEB_HOSTS, client_key)
    runs = {}
    with LoadLoop(sites=site_urls, clients_per_site=2, pace_seconds=PACE) as load:
        more, runs["three_workers"] = _playbook(
            inventory_file,
            "playbooks/web_hosts.yml",
            "-e",
            "calculator_web_gunicorn_workers=3",
            "-e",
            RENEW_ALL,
        )
        _ok(more)
        changed = {name: host(name).file(config).content_string for name in WEB_HOSTS}
    _record("gunicorn_workers", **_figures(load, runs, len(WEB_HOSTS)))
    renewed = _checksums(host, WEB_HOSTS, client_key)
    for name, text in changed.items():
        assert "workers = 3\n" in text, name
        assert renewed[name] != keys[name], f"{name}: the client key and certificate were not renewed"
    _assert_clean(load, host)


def test_failed_rollout_then_restart_drops_nothing(inventory_file, host, site_urls):
    source = Path(os.environ["TFSP_MODEL_SOURCE"])
    good = max(_controller_versions())
    bad = good + 1
    shutil.copytree(source / str(good), source / str(bad))
    (source / str(bad) / "saved_model.pb").write_bytes(GARBAGE)
    runs = {}
    try:
        with LoadLoop(sites=site_urls, clients_per_site=2, pace_seconds=PACE) as load:
            rollout, runs["failed_rollout"] = _playbook(
                inventory_file, "playbooks/deploy_model.yml", "-e", f"tf_serving_rollout_version={bad}"
            )
            # Ansible writes a failed task's message to stderr when its output is not a terminal.
            said = rollout.stdout + rollout.stderr
            assert rollout.returncode != 0, "the rollout of a corrupted version succeeded"
            assert f"{MODEL_BASE}/.quarantine/calculator-{bad}-" in said, said[-6000:]
            started = time.monotonic()
            restarted = host("stack-tfs1").run("docker restart tf-serving")
            assert restarted.rc == 0, restarted.stderr
            _wait_available(host, "stack-tfs1", good)
            runs["restart"] = time.monotonic() - started
    finally:
        # The operator's fix: the corrupted export goes; a fixed one would get a new number.
        shutil.rmtree(source / str(bad))
    _record("failed_rollout", **_figures(load, runs, 1))
    assert "DATA_LOSS" in said or "Can't parse" in said, said[-3000:]
    # The server's own error ended the wait, not tf_serving_available_timeout (240 s in the stack):
    # a run that waited it out takes those 240 s plus the rest of the play (over 270 s in all),
    # while this one takes 65-120 s here; the bound leaves a slower machine its margin.
    assert runs["failed_rollout"] < 235, runs
    # The first wave failed: the second host never got the version.
    assert not host("stack-tfs2").file(f"{MODEL_BASE}/calculator/{bad}").exists
    assert not host("stack-tfs1").file(f"{MODEL_BASE}/calculator/{bad}").exists
    quarantined = host("stack-tfs1").run(f"ls {MODEL_BASE}/.quarantine")
    assert f"calculator-{bad}-" in quarantined.stdout
    for name in SERVING_HOSTS:
        assert _states(host, name).get(good) == "AVAILABLE", name
    # Docker restarted the crash-looping server until the version was moved aside; now it stays up.
    restarts = _container(host, "stack-tfs1")["RestartCount"]
    time.sleep(5)
    container = _container(host, "stack-tfs1")
    assert container["State"]["Running"]
    assert container["RestartCount"] == restarts
    _assert_clean(load, host)


def test_rollback_to_the_previous_version_drops_nothing(inventory_file, host, site_urls):
    versions = _controller_versions()
    assert len(versions) >= 2, f"the rollout test should have exported a second version: {versions}"
    newest, previous = versions[-1], versions[-2]
    for name in SERVING_HOSTS:
        _wait_available(host, name, newest, timeout=30)
    runs = {}
    with LoadLoop(sites=site_urls, clients_per_site=2, pace_seconds=PACE) as load:
        rollback, runs["rollback"] = _playbook(
            inventory_file, "playbooks/deploy_model.yml", "-e", f"tf_serving_rollout_version={previous}"
        )
        _ok(rollback)
        load.mark("rolled_back")
        time.sleep(3)
        load.mark("after")
    _record("rollback", **_figures(load, runs, len(SERVING_HOSTS)))
    for name in SERVING_HOSTS:
        states = _states(host, name)
        assert states.get(previous) == "AVAILABLE", (name, states)
        assert states.get(newest) != "AVAILABLE", (name, states)
    after = [record.model_version for record in load.report.window("rolled_back", "after") if record.ok]
    assert after, "no answer after the rollback"
    assert set(after) == {previous}
    _assert_clean(load, host)
