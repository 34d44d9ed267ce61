"""Progressive delivery under load (playbooks/release.yml): three releases, each decided by the play.

Each release runs the operator's play against the stack while the shared load loop sends paced
requests through every web host and checks every answer against the arithmetic (a wrong answer is a
failed request). The play loads the new version next to the one served (`stable`), routes a share
of the calls to it (`canary`) and/or copies a share to it in the background (shadow, compared with
stable's answers), waits a window, reads the web tier's figures from Prometheus and promotes or
rolls back by itself:

- a good version (the served export, under a new number): promoted, zero failed requests;
- a version that loads fine but adds wrongly (tests/drills/faulty_export.py, a test fixture): shadow
  only, so no user gets its answers; the comparison catches it and the play rolls it back,
  quarantined, with zero wrong answers;
- a slow version (the stand-in's test-only --standin_test_delay_file, set in the local inventory):
  a canary share only; rolled back on latency, zero failed requests (under `make test-all` only).

The decisions and their figures land in the play's log (TFSP_RELEASE_LOG); the drill keeps them with
the load loop's timeline in build/drill-results/releases.json (the README's release timeline).
Runs after the other drills (conftest's FILE_ORDER): it starts from whatever single version they
left serving.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from loadloop import LoadLoop
from test_drills_changes import (
    MODEL_BASE,
    PACE,
    SERVING_HOSTS,
    _assert_clean,
    _controller_versions,
    _ok,
    _states,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS = REPO_ROOT / "build" / "drill-results" / "releases.json"
#: Prometheus scrapes every 5 s here (inventory/local): 30 s is six scrapes.
WINDOW = 30
#: The slow version answers DELAY_MS late (under the web tier's 250 ms attempt deadline, so its calls
#: are slow, not failed over). The decision compares p90, which a slow version moves as a whole
#: while a loaded two-core machine moves mostly the tail (p99 of a good canary reached 90 ms here
#: with other work running).
DELAY_MS = 150
THRESHOLDS = {
    "latency_quantile": 0.9,
    "max_latency_ms": 100,
    "max_latency_over_stable_ms": 80,
    "min_canary_calls": 50,
}


def _source() -> Path:
    return Path(os.environ["TFSP_MODEL_SOURCE"])


def _served(host) -> int:
    """The one version both serving hosts serve (the release's stable)."""
    found = {name: sorted(_available(host, name)) for name in SERVING_HOSTS}
    versions = {tuple(v) for v in found.values()}
    assert len(versions) == 1, found
    assert len(next(iter(versions))) == 1, found
    return next(iter(versions))[0]


def _release(
    inventory_file: str, log: Path, version: int | None, *extra: str
) -> tuple[subprocess.CompletedProcess, float]:
    """Run release.yml against the stack, logging its decisions to ``log``; (result, seconds)."""
    args = ["-e", f"release_window_seconds={WINDOW}", "-e", json.dumps({"release_thresholds": THRESHOLDS})]
    if version is not None:
        args += ["-e", f"release_version={version}"]
    started = time.monotonic()
    result = subprocess.run(
        ["ansible-playbook", "playbooks/release.yml", "-i", inventory_file, *args, *extra],
        cwd=REPO_ROOT,
        env={**os.environ, "TFSP_RELEASE_LOG": str(log)},
        # No terminal: the plays' pauses sleep instead of waiting on a prompt.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    # The play's whole output (profile_tasks times each task), kept beside the drill's figures.
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    (RESULTS.parent / f"release-{log.stem}.log").write_text(result.stdout + result.stderr)
    return result, time.monotonic() - started


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def _keep(name: str, load: LoadLoop, seconds: float, events: list[dict], started: float) -> None:
    """The release's timeline for the README: the play's events and the load loop's figures."""
    records = load.report.records
    answered = {}
    for record in records:
        if record.ok:
            answered.setdefault(str(record.model_version), []).append(record)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = {
        "seconds": round(seconds, 1),
        "requests": len(records),
        "failed": len(load.report.failures),
        "slowest_ms": round(load.report.slowest_ms),
        "answers_by_version": {version: len(found) for version, found in sorted(answered.items())},
        "events": events,
        "started_at": started,
        # Every 10 s of the run: answers by version, and failures.
        "timeline": _timeline(records, started),
        # What users waited inside the decision window (split and shadow on) and outside it.
        "p50_ms": _p50_in_and_out_of_window(records, events),
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _timeline(records, started: float) -> list[dict]:
    buckets: dict[int, dict] = {}
    for record in records:
        bucket = buckets.setdefault(int((record.wall - started) // 10) * 10, {"versions": {}, "failed": 0})
        if record.ok:
            key = str(record.model_version)
            bucket["versions"][key] = bucket["versions"].get(key, 0) + 1
        else:
            bucket["failed"] += 1
    return [{"second": second, **bucket} for second, bucket in sorted(buckets.items())]


def _p50_in_and_out_of_window(records, events: list[dict]) -> dict:
    decision = next((event for event in events if event["event"] == "decision"), None)
    if decision is None:
        return {}

    def epoch(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    opened, decided = epoch(decision["window_opened"]), epoch(decision["at"])
    inside = [r.elapsed_ms for r in records if r.ok and opened <= r.wall <= decided]
    outside = [r.elapsed_ms for r in records if r.ok and not opened <= r.wall <= decided]
    return {
        "window": round(statistics.median(inside), 1) if inside else None,
        "outside_window": round(statistics.median(outside), 1) if outside else None,
    }


def _next_version(host) -> int:
    """A number no version ever had: above the controller's and every serving host's quarantine.

    Versions are immutable, and an earlier drill's faulty version (removed from the controller, as
    an operator would) stays quarantined on the hosts under its number, which is never reused.
    """
    taken = set(_controller_versions())
    for name in SERVING_HOSTS:
        listing = host(name).run(f"ls {MODEL_BASE}/.quarantine").stdout.split()
        taken |= {int(entry.split("-")[1]) for entry in listing if entry.startswith("calculator-")}
    return max(taken) + 1


def _available(host, name: str) -> set[int]:
    return {version for version, state in _states(host, name).items() if state == "AVAILABLE"}


def _run_release(inventory_file, site_urls, tmp_path, name: str, version: int, *extra: str):
    log = tmp_path / f"{name}.jsonl"
    with LoadLoop(sites=site_urls, clients_per_site=2, pace_seconds=PACE) as load:
        started = time.time()
        result, seconds = _release(inventory_file, log, version, *extra)
        load.mark("released")
        time.sleep(3)
        load.mark("after")
    events = _events(log)
    _keep(name, load, seconds, events, started)
    said = result.stdout[-6000:] + result.stderr[-2000:]
    return result, load, events, said


def test_bad_release_requests_stop_before_any_host(inventory_file, host, tmp_path):
    stable = _served(host)
    log = tmp_path / "bad.jsonl"
    bad, _ = _release(
        inventory_file,
        log,
        _next_version(host),
        "-e",
        "release_canary_percent=150",
        "-e",
        "release_window_seconds=5",
    )
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "release_canary_percent must be a number from 0 to 100, not 150" in said, said[-3000:]
    assert "release_window_seconds 5 cannot be evaluated" in said, said[-3000:]
    assert "PLAY [Pin the stable label" not in bad.stdout
    same, _ = _release(inventory_file, log, stable)
    assert same.returncode != 0
    assert (
        f"version {stable} is the version the hosts serve now (stable): nothing to release"
        in same.stdout + same.stderr
    )
    assert not _events(log), "a refused release logged a decision"
    for name in SERVING_HOSTS:
        assert _available(host, name) == {stable}, name


def test_good_version_is_promoted_under_load(inventory_file, host, site_urls, tmp_path):
    stable = _served(host)
    good = _next_version(host)
    shutil.copytree(_source() / str(stable), _source() / str(good))
    result, load, events, said = _run_release(
        inventory_file,
        site_urls,
        tmp_path,
        "promote",
        good,
        "-e",
        "release_canary_percent=30",
        "-e",
        "release_shadow_percent=100",
    )
    _ok(result)
    decisions = [event for event in events if event["event"] == "decision"]
    assert [(d["decision"], d["by"]) for d in decisions] == [("promote", "metrics")], said
    figures = decisions[0]["figures"]
    assert figures["shadow_compared"] > 0, figures
    assert figures["shadow_mismatches"] == 0, figures
    assert figures["canary_split_calls"] > 0, figures
    assert events[-1]["event"] == "promoted"
    for name in SERVING_HOSTS:
        assert _available(host, name) == {good}, name
    # Users met the canary during the window, and only the new version after the promotion.
    assert load.report.versions[good] > 0, load.report.versions
    assert load.report.versions[stable] > 0, load.report.versions
    after = {record.model_version for record in load.report.window("released", "after") if record.ok}
    assert after == {good}
    _assert_clean(load, host)


def test_wrong_answers_are_caught_by_shadow_and_rolled_back(inventory_file, host, site_urls, tmp_path):
    stable = _served(host)
    wrong = _next_version(host)
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tests/drills/faulty_export.py"),
            str(_source() / str(stable)),
            str(_source() / str(wrong)),
        ],
        check=True,
        capture_output=True,
    )
    try:
        result, load, events, said = _run_release(
            inventory_file,
            site_urls,
            tmp_path,
            "shadow_rollback",
            wrong,
            "-e",
            "release_canary_percent=0",
            "-e",
            "release_shadow_percent=100",
        )
    finally:
        # The operator's fix: the faulty export goes; a fixed one would get a new number.
        shutil.rmtree(_source() / str(wrong))
    _ok(result)
    decisions = [event for event in events if event["event"] == "decision"]
    assert [(d["decision"], d["by"]) for d in decisions] == [("rollback", "metrics")], said
    assert any("shadow mismatch ratio" in reason for reason in decisions[0]["reasons"]), decisions
    assert decisions[0]["figures"]["shadow_mismatches"] > 0
    assert events[-1]["event"] == "rolled back"
    for name in SERVING_HOSTS:
        assert _available(host, name) == {stable}, name
        assert f"calculator-{wrong}-" in host(name).run(f"ls {MODEL_BASE}/.quarantine").stdout, name
    # Every answer was checked against the arithmetic: not one wrong answer reached a user.
    assert set(load.report.versions) == {stable}, load.report.versions
    _assert_clean(load, host)


# About 3.5 minutes: `make test` (CI, 90 minutes on two cores) leaves it to `make test-all`. The
# shadow release above already drives a rollback end to end; what only this one adds is the
# latency rule read from Prometheus, whose arithmetic tests/release checks without hosts.
@pytest.mark.skipif(os.environ.get("MOLECULE_MATRIX") != "all", reason="make test-all only (CI's time)")
def test_slow_version_is_rolled_back_on_latency(inventory_file, host, site_urls, tmp_path):
    stable = _served(host)
    slow = _next_version(host)
    shutil.copytree(_source() / str(stable), _source() / str(slow))
    (_source() / str(slow) / "standin-delay-ms").write_text(f"{DELAY_MS}\n")
    try:
        result, load, events, said = _run_release(
            inventory_file,
            site_urls,
            tmp_path,
            "latency_rollback",
            slow,
            "-e",
            "release_canary_percent=20",
            "-e",
            "release_shadow_percent=0",
        )
    finally:
        shutil.rmtree(_source() / str(slow))
    _ok(result)
    decisions = [event for event in events if event["event"] == "decision"]
    assert [(d["decision"], d["by"]) for d in decisions] == [("rollback", "metrics")], said
    assert any("canary latency" in reason for reason in decisions[0]["reasons"]), decisions
    assert decisions[0]["figures"]["canary_latency_ms"] >= DELAY_MS
    for name in SERVING_HOSTS:
        assert _available(host, name) == {stable}, name
    assert load.report.versions[slow] > 0, "no user call reached the canary"
    after = {record.model_version for record in load.report.window("released", "after") if record.ok}
    assert after == {stable}
    _assert_clean(load, host)


@pytest.fixture(autouse=True)
def _no_stray_versions():
    """A failed drill must not leave a faulty or slow export behind for the next one."""
    before = set(_controller_versions())
    yield
    for version in set(_controller_versions()) - before:
        if (_source() / str(version) / "standin-delay-ms").exists():
            shutil.rmtree(_source() / str(version))
