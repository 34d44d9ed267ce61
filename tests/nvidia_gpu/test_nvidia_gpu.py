"""GPU detection: the nvidia_gpu local fact read by plugins/plugin_utils/nvidia_gpu.py.

The rule is tested directly, then through Ansible itself: the setup module reads fact scripts from a
temporary facts directory (as it reads /etc/ansible/facts.d on a host) and the filters the roles call
(tfsp.serving.nvidia_gpu_count, tfsp.serving.nvidia_gpu_present) read what it gathered.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.tfsp.serving.plugins.plugin_utils.nvidia_gpu import GpuFactError, gpu_count
from playbook_run import run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN = REPO_ROOT / "plugins" / "filter" / "nvidia_gpu.py"
_spec = importlib.util.spec_from_file_location("nvidia_gpu_filters", PLUGIN)
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)


# What Ansible puts in place of a fact script whose output it cannot parse.
UNPARSED = "error loading facts as JSON or ini - please check content: /etc/ansible/facts.d/nvidia_gpu.fact"
TWO_GPUS = {"count": 2, "pci_addresses": ["0000:3b:00.0", "0000:86:00.0"]}


def facts(fact) -> dict:
    return {"ansible_local": {"nvidia_gpu": fact}}


@pytest.mark.parametrize(
    ("host_facts", "expected"),
    [
        (facts(TWO_GPUS), 2),
        (facts({"count": 0, "pci_addresses": []}), 0),
        (facts({"count": "1"}), 1),  # an INI-style fact gives text
        ({"ansible_local": {}}, 0),  # local facts gathered, the fact never installed
        ({"ansible_local": {"other": {"count": 4}}}, 0),
        ({"distribution": "Debian"}, 0),  # no local facts gathered
        ({}, 0),
        (None, 0),
    ],
)
def test_count(host_facts, expected):
    assert gpu_count(host_facts) == expected
    assert filters.nvidia_gpu_count(host_facts) == expected
    assert filters.nvidia_gpu_present(host_facts) is (expected > 0)


@pytest.mark.parametrize(
    ("host_facts", "message"),
    [
        (facts(UNPARSED), "could not be read: error loading facts"),
        (facts({"pci_addresses": []}), "no GPU count"),
        (facts({"count": "two"}), "no GPU count"),
        (facts({"count": -1}), "no GPU count"),
        (facts({"count": True}), "no GPU count"),
        (facts({"count": 1.5}), "no GPU count"),
        ({"ansible_local": ["nvidia_gpu"]}, "ansible_local is not a mapping"),
        ("Debian", "expected a host's facts"),
    ],
)
def test_a_fact_that_says_no_count_is_an_error_not_a_cpu_host(host_facts, message):
    with pytest.raises(GpuFactError, match=message):
        gpu_count(host_facts)
    with pytest.raises(AnsibleFilterError, match=f"nvidia_gpu_present: .*{message}"):
        filters.nvidia_gpu_present(host_facts)
    with pytest.raises(AnsibleFilterError, match=f"nvidia_gpu_count: .*{message}"):
        filters.nvidia_gpu_count(host_facts)


PLAYBOOK = """\
- name: Read the GPU fact as the roles do
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Gather the local facts of the test's facts directory
      ansible.builtin.setup:
        gather_subset: [local]
        fact_path: {fact_path}
    - name: Count and detect with the collection's filters
      ansible.builtin.copy:
        dest: {result}
        content: "{{{{ {{'count': ansible_facts | tfsp.serving.nvidia_gpu_count,
                        'present': ansible_facts | tfsp.serving.nvidia_gpu_present}} | to_json }}}}"
        mode: "0600"
"""


def _read_with_ansible(tmp_path: Path, fact_script: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    fact_path = tmp_path / "facts.d"
    fact_path.mkdir()
    if fact_script is not None:
        script = fact_path / "nvidia_gpu.fact"
        script.write_text(fact_script)
        script.chmod(0o755)
    result = tmp_path / "result.json"
    playbook = tmp_path / "read.yml"
    playbook.write_text(PLAYBOOK.format(fact_path=fact_path, result=result))
    run = run_playbook(playbook)
    return run, result


def _fact_script(output: str) -> str:
    return f"#!/bin/sh\ncat <<'JSON'\n{output}\nJSON\n"


@pytest.mark.parametrize(
    ("fact_script", "expected"),
    [
        (_fact_script(json.dumps(TWO_GPUS)), {"count": 2, "present": True}),
        (_fact_script('{"count": 0, "pci_addresses": []}'), {"count": 0, "present": False}),
        (None, {"count": 0, "present": False}),
    ],
    ids=["two-gpus", "no-gpu", "no-fact"],
)
def test_gathered_by_ansible(tmp_path, fact_script, expected):
    run, result = _read_with_ansible(tmp_path, fact_script)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(result.read_text()) == expected


def test_an_unreadable_fact_stops_the_run(tmp_path):
    run, result = _read_with_ansible(tmp_path, _fact_script("nvidia-smi: command not found"))
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "nvidia_gpu local fact could not be read" in output
    assert not result.exists()


def test_the_driver_roles_fact_script_reads_as_a_count(tmp_path):
    """The real fact script, on this machine: whatever it finds, the filter reads a count from it."""
    script = (REPO_ROOT / "roles/nvidia_driver/files/nvidia_gpu.fact").read_text()
    run, result = _read_with_ansible(tmp_path, script)
    assert run.returncode == 0, run.stdout + run.stderr
    read = json.loads(result.read_text())
    assert isinstance(read["count"], int)
    assert read["present"] is (read["count"] > 0)
