"""Every Molecule scenario's hosts come from one platform definition: molecule/shared/create.yml.

Scenarios give a host's name, image and groups (and networks or published ports where they differ);
the systemd settings are the create step's. These tests need no Docker: they merge each scenario's
molecule.yml over the shared .config/molecule/config.yml with Molecule's own merge (as Molecule
does), check the create step each scenario resolves, and run the create step's own expressions with
Ansible on each scenario's platforms, for each Debian release, to see the networks and settings it
would create them with.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from molecule.interpolation import Interpolator, TemplateWithDefaults
from molecule.util import merge_dicts
from molecule_harness import REPO_ROOT, load_matrix, scenarios
from playbook_run import run_playbook

SHARED_CONFIG = REPO_ROOT / ".config" / "molecule" / "config.yml"
CREATE = REPO_ROOT / "molecule" / "shared" / "create.yml"
DESTROY = REPO_ROOT / "molecule" / "shared" / "destroy.yml"
CREATE_PLAY = yaml.safe_load(CREATE.read_text())[0]
SHARED_SETTINGS = CREATE_PLAY["vars"]["tfsp_test_host_shared"]
PLATFORM_KEYS = set(CREATE_PLAY["vars"]["tfsp_test_host_keys"])
RELEASES = load_matrix()["all"]
SCENARIOS = scenarios()


def _id(scenario: Path) -> str:
    return str(scenario.relative_to(REPO_ROOT))


def merged_config(scenario: Path, release: str) -> dict:
    """The scenario's configuration as Molecule builds it: both files interpolated, then merged."""
    env = {
        **os.environ,
        "MOLECULE_DISTRO": release,
        "MOLECULE_PROJECT_DIRECTORY": str(scenario.parent.parent),
        "MOLECULE_SCENARIO_DIRECTORY": str(scenario),
        "MOLECULE_EPHEMERAL_DIRECTORY": "/nonexistent/ephemeral",
    }
    interpolator = Interpolator(TemplateWithDefaults, env)
    merged: dict = {}
    for path in (SHARED_CONFIG, scenario / "molecule.yml"):
        merged = merge_dicts(merged, yaml.safe_load(interpolator.interpolate(path.read_text())))
    return merged


def test_there_are_scenarios_to_check():
    names = {_id(scenario) for scenario in SCENARIOS}
    assert "molecule/stack" in names
    assert "roles/nginx/molecule/default" in names


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_every_scenario_creates_its_hosts_with_the_shared_step(scenario):
    # Molecule falls back to the driver's own create playbook, silently, when
    # the configured path does not exist: the path must resolve from each.
    create = merged_config(scenario, RELEASES[0])["provisioner"]["playbooks"]["create"]
    assert (scenario / create).resolve() == CREATE


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_every_scenario_removes_its_hosts_volumes_with_the_shared_step(scenario):
    # The same silent fallback: the driver's destroy would leave each host's
    # /var/lib/docker volume (an inner engine's images) on the engine.
    destroy = merged_config(scenario, RELEASES[0])["provisioner"]["playbooks"]["destroy"]
    assert (scenario / destroy).resolve() == DESTROY


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_no_scenario_repeats_the_shared_settings(scenario):
    platforms = yaml.safe_load((scenario / "molecule.yml").read_text())["platforms"]
    assert platforms
    for platform in platforms:
        assert not set(platform) & set(SHARED_SETTINGS), platform["name"]
        assert set(platform) <= PLATFORM_KEYS, platform["name"]
        assert {"name", "image"} <= set(platform), platform


RENDER_TASKS = """\
    - name: Start from no host (facts of localhost outlive each play)
      ansible.builtin.set_fact:
        rendered_hosts: []
    - name: Each host's settings as the create step merges them
      ansible.builtin.set_fact:
        rendered_hosts: "{{ rendered_hosts + [tfsp_test_host_shared | combine(item)] }}"
      loop: "{{ tfsp_platforms }}"
    - name: Write the networks and hosts
      ansible.builtin.copy:
        dest: "{{ rendered_result }}"
        mode: "0600"
        content: "{{ {'networks': rendered_networks, 'hosts': rendered_hosts} | to_json }}"
      vars:
        rendered_networks: "{{ tfsp_declared_networks + tfsp_joined_networks }}"
"""
# The create step's own check of each platform's keys, as it is in the file.
CHECK_TASK = next(
    task for task in CREATE_PLAY["tasks"] if "ansible.builtin.assert" in task and "loop" in task
)


def render(work: Path, cases: dict[str, dict]) -> tuple[subprocess.CompletedProcess, dict[str, Path]]:
    """One play per case (name -> merged configuration): the create step's own variables and its
    platform check, on localhost; no Docker involved. Each play writes its networks and hosts."""
    plays, results = [], {}
    for name, config in cases.items():
        results[name] = work / f"{name.replace('/', '_')}.json"
        play_vars = {**CREATE_PLAY["vars"], "molecule_yml": config, "rendered_result": str(results[name])}
        tasks = [CHECK_TASK, *yaml.safe_load(RENDER_TASKS)]
        plays.append(
            {"name": name, "hosts": "localhost", "gather_facts": False, "vars": play_vars, "tasks": tasks}
        )
    playbook = work / "render.yml"
    playbook.write_text(json.dumps(plays))
    run = run_playbook(playbook)
    return run, results


@pytest.fixture(scope="module")
def created(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """(scenario, release) -> the networks and hosts the create step would make."""
    cases = {
        f"{_id(scenario)}@{release}": merged_config(scenario, release)
        for scenario in SCENARIOS
        for release in RELEASES
    }
    run, results = render(tmp_path_factory.mktemp("create"), cases)
    assert run.returncode == 0, run.stdout + run.stderr
    return {tuple(name.split("@")): json.loads(path.read_text()) for name, path in results.items()}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=_id)
def test_every_host_gets_the_shared_settings_on_each_release(created, scenario, release):
    platforms = merged_config(scenario, release)["platforms"]
    hosts = created[(_id(scenario), release)]["hosts"]
    assert [host["name"] for host in hosts] == [platform["name"] for platform in platforms]
    for platform, host in zip(platforms, hosts, strict=True):
        assert host == SHARED_SETTINGS | platform
        assert host["image"] == f"tfsp/testhost:{release}"
        assert host["command"] == "/lib/systemd/systemd"


def test_the_stack_hosts_share_one_network_and_keep_their_ports(created):
    stack = created[("molecule/stack", "trixie")]
    assert stack["networks"] == [{"name": "tfsp-stack"}]
    hosts = {host["name"]: host for host in stack["hosts"]}
    assert len(hosts) == 6
    assert hosts["stack-web1"]["published_ports"] == ["127.0.0.1:18443:443"]
    assert hosts["stack-web2"]["published_ports"] == ["127.0.0.1:18444:443"]
    assert all(host["networks"] == [{"name": "tfsp-stack"}] for host in hosts.values())


def test_a_declared_network_is_created_once_with_its_settings(created):
    for release in RELEASES:
        assert created[("roles/firewall/molecule/default", release)]["networks"] == [
            {
                "name": f"tfsp-fw-{release}",
                "enable_ipv6": True,
                "ipam_config": [{"subnet": "fd5c:7f5e:f1a0:1::/64"}],
            }
        ]


def test_a_setting_the_step_does_not_handle_stops_it(tmp_path):
    config = merged_config(REPO_ROOT / "roles" / "nginx" / "molecule" / "default", RELEASES[0])
    config["platforms"][0]["privileged"] = True
    run, results = render(tmp_path, {"privileged": config})
    assert run.returncode != 0
    assert "privileged not handled by molecule/shared/create.yml" in run.stdout
    assert not results["privileged"].exists()
