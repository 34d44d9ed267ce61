"""A failed rollout of a corrupted version, then a restart of TF Serving, under load.

NOT YET IN THE SUITE (the file name keeps pytest from collecting it). Its last full-stack run
found a real bug, fixed since: a rollout that coincided with a restart (deploy_model.yml applied
settings that earlier drills had changed by extra vars, so the container was recreated with the
new version) left the server crash-looping, and nothing was quarantined. The role now quarantines
the version the server's log names; in that run the quarantine worked ("Move the versions that
failed to load into quarantine: changed calculator/3") and the drill then failed on its own check,
which read the play's message from stdout while Ansible writes it to stderr. Both are fixed here
and not yet re-run. To run it: rename it to test_drills_failed_rollout.py, add it to FILE_ORDER in
conftest.py after test_drills_changes.py (before the rollback there, or give it its own version),
and run the stack scenario. Note the rollout waits tf_serving_available_timeout (4 min here)
before it quarantines: the slow path of the role, see roles/tf_serving/README.md.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from loadloop import LoadLoop
from test_drills_changes import (
    GARBAGE,
    MODEL_BASE,
    PACE,
    SERVING_HOSTS,
    _assert_clean,
    _container,
    _controller_versions,
    _figures,
    _playbook,
    _record,
    _states,
    _wait_available,
)


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
    _assert_clean(load)
