"""Deployment timings on the local stack: site.yml first run and idempotent re-run, and a rollout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .stats import BenchError, parse_recap

REPO = Path(__file__).resolve().parents[3]
INVENTORY = "inventory/local/hosts.yml"
FIRST_RUN_RECORD = REPO / "build/bench/site-first-run.json"


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    return env


def playbook(*args: str, log: Path) -> tuple[float, dict[str, dict[str, int]]]:
    """Run ansible-playbook on the local stack: (seconds, PLAY RECAP); its output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, *args],
            cwd=REPO,
            env=ansible_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - start
    text = log.read_text()
    if done.returncode != 0:
        raise BenchError(f"ansible-playbook {' '.join(args)} failed (exit {done.returncode}); see {log}")
    return seconds, parse_recap(text)


def first_run() -> dict | None:
    """The timing `make demo` recorded for site.yml on freshly created hosts, if any."""
    if not FIRST_RUN_RECORD.exists():
        return None
    record = json.loads(FIRST_RUN_RECORD.read_text())
    log = FIRST_RUN_RECORD.with_suffix(".log")
    record["recap"] = parse_recap(log.read_text()) if log.exists() else {}
    return record


def rerun(log_dir: Path) -> dict:
    """site.yml again on the deployed stack: it must change nothing."""
    seconds, recap = playbook("site.yml", log=log_dir / "site-rerun.log")
    changed = {host: counts["changed"] for host, counts in recap.items() if counts["changed"]}
    return {"seconds": round(seconds, 1), "recap": recap, "changed_hosts": changed}


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.exists() else []
    if not versions:
        raise BenchError(f"no exported version in {model_dir}: run `make demo` first")
    return max(versions) + 1


def export_version(model_base: Path, name: str, version: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "model_src.export", "--model-base", str(model_base), "--name", name,
         "--version", str(version)],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip


def rollout(model_base: Path, name: str, gpu_hosts: list[str], poll, log_dir: Path) -> dict:
    """Export the next version, roll it out with playbooks/deploy_model.yml, and time it.

    `poll(host)` returns the versions AVAILABLE on a GPU host. The clock starts when the rollout
    playbook is started and stops for each host when it first reports the new version AVAILABLE.
    """
    version = next_version(model_base / name)
    export_version(model_base, name, version)
    log = log_dir / "rollout.log"
    start = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY,
             "playbooks/deploy_model.yml", "-e", f"tf_serving_rollout_version={version}"],
            cwd=REPO, env=ansible_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        serving: dict[str, float] = {}
        while process.poll() is None or len(serving) < len(gpu_hosts):
            for host in gpu_hosts:
                if host not in serving and version in poll(host):
                    serving[host] = round(time.monotonic() - start, 2)
            if process.poll() is not None and len(serving) < len(gpu_hosts):
                break
            time.sleep(0.2)
        playbook_seconds = time.monotonic() - start
    for host in gpu_hosts:  # a last look: the playbook may have ended between two polls
        if host not in serving and version in poll(host):
            serving[host] = round(time.monotonic() - start, 2)
    if process.returncode != 0:
        raise BenchError(f"the rollout of version {version} failed; see {log}")
    missing = [h for h in gpu_hosts if h not in serving]
    if missing:
        raise BenchError(f"version {version} is not AVAILABLE on {', '.join(missing)} after the rollout")
    return {
        "version": version,
        "serving_after_seconds": serving,
        "all_serving_seconds": max(serving.values()),
        "playbook_seconds": round(playbook_seconds, 1),
    }
