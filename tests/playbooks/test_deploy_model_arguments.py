"""The playbooks refuse bad arguments before any host is touched.

deploy_model.yml checks a rollout or rollback request (model, version, label)
and, like gpu_hosts.yml and web_hosts.yml, the wave settings, on the
controller, before its first play that reaches a host. These tests run the
real playbooks with the repository's ansible.cfg and the local inventory's
group_vars, against an inventory whose hosts cannot be reached on purpose
(a TEST-NET-1 address), and a model export of versions 1 to 3 on the
controller (the local inventory reads its path from TFSP_MODEL_SOURCE).

A refused request must fail with exit code 2 (a failed task, not 4: an
unreachable host), one line saying what is wrong, no UNREACHABLE and no play
that reaches a host started. The positive controls give valid arguments: they
pass the checks and only then fail, UNREACHABLE, in the first play that
reaches a host. That tells the checks apart from the dead inventory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The ansible-playbook of the environment pytest runs in (.venv), else from PATH.
ANSIBLE_PLAYBOOK = (
    shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
)
CONTROLLER_VERSIONS = (1, 2, 3)
# The first play of each playbook that connects to a host.
HOST_PLAY = {
    "deploy_model.yml": "PLAY [Roll out a model version]",
    "gpu_hosts.yml": "PLAY [Gather facts of every host]",
    "web_hosts.yml": "PLAY [Gather facts of every host]",
}
# The groups of inventory/local/hosts.yml, two hosts per tier as there, at an
# address nothing answers on; the host variables only on the tier groups, so
# the implicit localhost the checks run on keeps its local connection.
UNREACHABLE = {"ansible_connection": "ssh", "ansible_host": "192.0.2.1", "ansible_ssh_timeout": 2}
INVENTORY = {
    "all": {
        "children": {
            "tf_serving": {
                "hosts": {"unreachable-tfs1": None, "unreachable-tfs2": None},
                "vars": UNREACHABLE,
            },
            "web": {"hosts": {"unreachable-web1": None, "unreachable-web2": None}, "vars": UNREACHABLE},
            "monitoring": {"hosts": {"unreachable-mon1": None}, "vars": UNREACHABLE},
        }
    }
}


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An inventory of unreachable hosts and a model export on the controller."""
    root = tmp_path_factory.mktemp("deploy_model")
    source = root / "models" / "calculator"
    for version in CONTROLLER_VERSIONS:
        (source / str(version)).mkdir(parents=True)
    inventory = root / "inventory"
    inventory.mkdir()
    # The local inventory's group_vars: tf_serving_models and the rest.
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "local" / "group_vars")
    (inventory / "hosts.yml").write_text(json.dumps(INVENTORY))
    return {"root": root, "source": source, "hosts": inventory / "hosts.yml"}


def run_playbook(
    controller: dict[str, Path], playbook: str, extra_vars: list[str]
) -> subprocess.CompletedProcess:
    """``ansible-playbook playbooks/<playbook> -e ...`` against the unreachable inventory."""
    command = [ANSIBLE_PLAYBOOK, "-i", str(controller["hosts"]), f"playbooks/{playbook}"]
    for extra in extra_vars:
        command += ["-e", extra]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(controller["root"] / "facts"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(controller["root"] / "cp"),
        "TFSP_MODEL_SOURCE": str(controller["source"]),
    }
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


WAVES = "tf_serving_waves: "
WEB_WAVES = "web_hosts_waves: "

REFUSED = [
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=9"],
        "calculator version 9 is not on the controller in {source} (it has [1, 2, 3])",
        id="version-the-controller-lacks",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=0"],
        "calculator version 0 is not on the controller in {source} (it has [1, 2, 3])",
        id="rollback-to-a-version-the-controller-lacks",
    ),
    pytest.param(
        "deploy_model.yml",
        [],
        "give the version to roll out or back to as -e tf_serving_rollout_version=N",
        id="no-version",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=two"],
        "tf_serving_rollout_version must be a non-negative integer, not 'two'",
        id="version-not-a-number",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=2.5"],
        "tf_serving_rollout_version must be a non-negative integer, not '2.5'",
        id="version-not-an-integer",
    ),
    pytest.param(
        "deploy_model.yml",
        ['{"tf_serving_rollout_version": -1}'],
        "tf_serving_rollout_version must be a non-negative integer, not -1",
        id="version-negative",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=2", "tf_serving_rollout_model=classifier"],
        "model 'classifier' is not in tf_serving_models (known: calculator)",
        id="model-not-in-tf_serving_models",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=2", "tf_serving_rollout_label=stable-1"],
        "label 'stable-1' must match [A-Za-z0-9_]+",
        id="label-bad-name",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=7", "tf_serving_rollout_label=stable"],
        "calculator version 7 is not on the controller",
        id="label-on-a-version-the-controller-lacks",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_waves": 0}'],
        WAVES + "wave 0 must be at least 1 host",
        id="waves-zero",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_waves": [1, "150%"]}'],
        WAVES + "wave '150%' must be a percentage above 0 and at most 100",
        id="waves-over-100-percent",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_waves": ["abc"]}'],
        WAVES + "wave 'abc' is neither a host count (1, 2, ...) nor a percentage ('25%')",
        id="waves-nonsense",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_waves": []}'],
        WAVES + "the wave list is empty",
        id="waves-empty-list",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_waves": [2]}'],
        WAVES + "wave 2 takes all 2 hosts of the tier down at once",
        id="waves-whole-tier",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_max_fail_percentage": 150}'],
        WAVES + "max_fail_percentage 150 must be an integer from 0 to 100",
        id="max-fail-percentage-over-100",
    ),
    pytest.param(
        "gpu_hosts.yml",
        ['{"tf_serving_waves": [1, "0%"]}'],
        WAVES + "wave '0%' must be a percentage above 0 and at most 100",
        id="gpu_hosts-waves-zero-percent",
    ),
    pytest.param(
        "gpu_hosts.yml",
        ['{"tf_serving_waves": ["100%"]}'],
        WAVES + "wave '100%' takes all 2 hosts of the tier down at once",
        id="gpu_hosts-waves-whole-tier",
    ),
    pytest.param(
        "web_hosts.yml",
        ['{"web_hosts_waves": [1, "x"]}'],
        WEB_WAVES + "wave 'x' is neither a host count (1, 2, ...) nor a percentage ('25%')",
        id="web_hosts-waves-nonsense",
    ),
    pytest.param(
        "web_hosts.yml",
        ["web_hosts_max_fail_percentage=some"],
        WEB_WAVES + "max_fail_percentage 'some' must be an integer from 0 to 100",
        id="web_hosts-max-fail-percentage-not-a-number",
    ),
]

ACCEPTED = [
    pytest.param("deploy_model.yml", ["tf_serving_rollout_version=3"], id="rollout-of-the-newest-version"),
    pytest.param("deploy_model.yml", ["tf_serving_rollout_version=1"], id="rollback-to-an-older-version"),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=2", "tf_serving_rollout_label=stable"],
        id="label-moved-to-a-version",
    ),
    pytest.param(
        "deploy_model.yml",
        ["tf_serving_rollout_version=3", '{"tf_serving_waves": [2], "waves_allow_whole_tier": true}'],
        id="whole-tier-when-allowed",
    ),
    pytest.param("gpu_hosts.yml", ['{"tf_serving_waves": [1, "50%"]}'], id="gpu_hosts-waves"),
    pytest.param(
        "web_hosts.yml", ['{"web_hosts_waves": 1, "web_hosts_max_fail_percentage": 50}'], id="web_hosts-waves"
    ),
]


@pytest.mark.parametrize(("playbook", "extra_vars", "message"), REFUSED)
def test_bad_arguments_stop_the_playbook_before_any_host_is_touched(
    controller, playbook, extra_vars, message
):
    result = run_playbook(controller, playbook, extra_vars)
    output = output_of(result)
    expected = message.format(source=controller["source"])
    assert result.returncode == 2, output
    assert any(expected in line for line in output.splitlines()), f"no line says {expected!r}:\n{output}"
    assert "UNREACHABLE" not in output, output
    assert HOST_PLAY[playbook] not in output, output


@pytest.mark.parametrize(("playbook", "extra_vars"), ACCEPTED)
def test_valid_arguments_pass_the_checks_and_reach_the_hosts(controller, playbook, extra_vars):
    result = run_playbook(controller, playbook, extra_vars)
    output = output_of(result)
    assert result.returncode == 4, output
    assert "FAILED!" not in output, output
    assert HOST_PLAY[playbook] in output, output
    assert "UNREACHABLE!" in output.split(HOST_PLAY[playbook], 1)[1], output
