"""The roles as the installed collection tfsp.serving, used from a playbook outside the repository.

The collection is built from this tree, installed offline from its tarball into an empty path, and
a playbook in a temporary directory runs the tf_serving role by its fully-qualified name. That role
calls the collection's filter plugins by their collection names, so the run also shows that the
plugins resolve from the installed copy: nothing of the repository is on the path (its ansible.cfg
maps the clone as the collection; here a config of the test's own replaces it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
# Every role, the stack role included (it has defaults and a spec but no tasks).
ROLES = sorted(path.parent.parent.name for path in (REPO_ROOT / "roles").glob("*/meta/argument_specs.yml"))
# The tarball holds roles, plugins and metadata only; a stray build output or
# test image in it would show as size long before anyone reads its listing.
MAX_TARBALL_BYTES = 300_000

PRUNE_PLAYBOOK = """\
- name: Retire old model versions with the installed collection's role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the tf_serving role's prune step by its fully-qualified name
      ansible.builtin.include_role:
        name: {fqcn}.tf_serving
        tasks_from: prune.yml
      vars:
        tf_serving_model_base: {model_base}
        tf_serving_model: {{name: calc, keep: 2, labels: {{stable: 1}}}}
        tf_serving_expected_versions: {{calc: [5]}}
"""

BAD_ARGUMENT_PLAYBOOK = """\
- name: Give the installed collection's role a bad argument
  hosts: localhost
  gather_facts: false
  roles:
    - role: {fqcn}.tf_serving
      vars:
        tf_serving_models: 17
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the collection, install its tarball offline into an empty path; the paths and environment."""
    work = tmp_path_factory.mktemp("collection")
    assert not work.resolve().is_relative_to(REPO_ROOT), "the playbook must run outside the repository"
    collections = work / "collections"
    config = work / "ansible.cfg"
    config.write_text(f"[defaults]\ncollections_path = {collections}\nretry_files_enabled = false\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")

    def run(*argv: str, cwd: Path = work) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    build = run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(work), cwd=REPO_ROOT)
    assert build.returncode == 0, build.stdout + build.stderr
    install = run(
        str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections),
        str(work / TARBALL),
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return {"work": work, "collections": collections, "run": run, "tarball": work / TARBALL}


def test_tarball_holds_only_the_collection(installed) -> None:
    tarball = installed["tarball"]
    assert tarball.stat().st_size < MAX_TARBALL_BYTES
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    top = {name.split("/", 1)[0] for name in names}
    metadata = {"CHANGELOG.md", "FILES.json", "LICENSE", "MANIFEST.json", "README.md"}
    expected = metadata | {"meta", "plugins", "roles"}
    assert top == expected
    assert "plugins/filter/tf_serving_versions.py" in names
    assert "plugins/filter/monitoring.py" in names
    assert "plugins/filter/nvidia_gpu.py" in names
    assert "plugins/plugin_utils/nvidia_gpu.py" in names
    assert "plugins/modules/tf_serving_server_started.py" in names
    assert not [name for name in names if "/molecule/" in name or "__pycache__" in name]


def test_installed_into_the_empty_path(installed) -> None:
    listing = installed["run"](str(BIN / "ansible-galaxy"), "collection", "list", FQCN)
    assert listing.returncode == 0, listing.stderr
    assert str(installed["collections"]) in listing.stdout
    assert f"{FQCN} {GALAXY['version']}" in " ".join(listing.stdout.split())


def test_ansible_doc_sees_every_role_by_fqcn(installed) -> None:
    doc = installed["run"](str(BIN / "ansible-doc"), "-t", "role", "-l", FQCN)
    assert doc.returncode == 0, doc.stderr
    listed = {line.rstrip(":") for line in doc.stdout.splitlines() if line.startswith(f"{FQCN}.")}
    assert listed == {f"{FQCN}.{role}" for role in ROLES}
    modules = installed["run"](str(BIN / "ansible-doc"), "-t", "module", "-l", FQCN)
    assert modules.returncode == 0, modules.stderr
    assert f"{FQCN}.tf_serving_server_started" in modules.stdout


def _playbook(installed, name: str, text: str, *options: str) -> subprocess.CompletedProcess:
    path = installed["work"] / name
    path.write_text(text)
    return installed["run"](
        str(BIN / "ansible-playbook"),
        "-i", "localhost,",
        "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
        *options,
        str(path),
    )  # fmt: skip


def test_a_playbook_outside_the_repository_runs_a_role_by_fqcn(installed) -> None:
    base = installed["work"] / "models"
    for version in range(1, 6):
        (base / "calc" / str(version)).mkdir(parents=True)
    (base / ".staging").mkdir()
    result = _playbook(installed, "prune.yml", PRUNE_PLAYBOOK.format(fqcn=FQCN, model_base=base))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"TASK [{FQCN}.tf_serving : Retire old versions of calc]" in result.stdout
    # keep 2 (5 and 4), the label's 1 and the served 5 stay; 2 and 3 go, staging copies included.
    assert sorted(path.name for path in (base / "calc").iterdir()) == ["1", "4", "5"]
    assert list((base / ".staging").iterdir()) == []


def test_a_bad_argument_fails_with_the_role_spec_message(installed) -> None:
    result = _playbook(installed, "bad.yml", BAD_ARGUMENT_PLAYBOOK.format(fqcn=FQCN))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Validation of arguments failed" in output
    assert "'tf_serving_models' must be a list" in output
    # The spec that refused it is the installed copy's, not the repository's.
    collection = installed["collections"] / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    role_path = collection / "roles" / "tf_serving"
    assert str(role_path) in output


ALONE_PLAY = """\
- name: The installed {fqcn} alone, its tasks filtered out (its argument validation runs)
  hosts: localhost
  gather_facts: true
  gather_subset: [min]
  fact_path: {facts}
  roles:
    - role: {fqcn}
  tasks:
    - name: Write what the role resolved
      ansible.builtin.copy:
        dest: {result}
        content: "{{{{ {variables} | to_json }}}}"
        mode: "0600"
      tags: [alone]
"""


def shared_defaults(stack: dict) -> dict[str, dict]:
    """Each role's variables that default to a value of the stack role, and what they should resolve to."""
    grpc, rest = stack["stack_tf_serving_grpc_port"], stack["stack_tf_serving_rest_port"]
    socket, static = stack["stack_web_socket_path"], stack["stack_web_static_root"]
    metrics_path, model_base = stack["stack_tf_serving_metrics_path"], stack["stack_tf_serving_model_base"]
    node, nginx_exporter = stack["stack_node_exporter_port"], stack["stack_nginx_exporter_port"]
    web_metrics, dcgm = stack["stack_web_metrics_port"], stack["stack_dcgm_exporter_port"]
    stub_status = stack["stack_nginx_stub_status_listen"]
    return {
        "calculator_web": {
            "calculator_web_socket_path": socket,
            "calculator_web_static_root": static,
            "calculator_web_tf_serving_grpc_port": grpc,
            "calculator_web_tf_serving_rest_port": rest,
            "calculator_web_tf_serving_tls_enabled": stack["stack_tls_enabled"],
        },
        "nginx": {
            "nginx_upstream_servers": [f"unix:{socket}"],
            "nginx_static_root": static,
            "nginx_metrics_port": web_metrics,
            "nginx_stub_status_listen": stub_status,
        },
        # No nvidia_gpu fact (an empty facts directory): every role takes it for a CPU host.
        "tf_serving": {
            "tf_serving_grpc_port": grpc,
            "tf_serving_rest_port": rest,
            "tf_serving_gpu_present": False,
            "tf_serving_tls_enabled": stack["stack_tls_enabled"],
            "tf_serving_monitoring_path": metrics_path,
            "tf_serving_model_base": model_base,
            "tf_serving_container_name": stack["stack_tf_serving_container_name"],
        },
        # Derived in the stack role itself: one container (one per GPU is off) on the stack's ports.
        "stack": {
            "stack_tf_serving_instances": [
                {
                    "index": 0,
                    "name": stack["stack_tf_serving_container_name"],
                    "grpc_port": grpc,
                    "rest_port": rest,
                    "device": None,
                    "ports": [grpc, rest],
                }
            ]
        },
        # An inventory given as a host list has no directory: the CA's directory is "default".
        "tls_pki": {"tls_pki_dir": str(Path.home() / ".local/share/tfsp/pki/default")},
        "firewall": {
            "firewall_tf_serving_ports": [grpc, rest],
            "firewall_tf_serving_monitoring_ports": [rest],
            "firewall_exporter_ports": [node, nginx_exporter, web_metrics, dcgm],
        },
        "monitoring": {
            "monitoring_tf_serving_rest_port": rest,
            "monitoring_dcgm_gpu_present": False,
            "monitoring_tf_serving_metrics_path": metrics_path,
            "monitoring_model_directory": model_base,
            "monitoring_node_exporter_port": node,
            "monitoring_nginx_exporter_port": nginx_exporter,
            "monitoring_dcgm_exporter_port": dcgm,
            "monitoring_web_metrics_port": web_metrics,
            "monitoring_nginx_stub_status_url": f"http://{stub_status}/stub_status",
        },
        "container_runtime": {"container_runtime_gpu_present": False},
    }


def test_each_role_alone_resolves_its_shared_values(installed) -> None:
    """A role that shares a value brings the stack role as its dependency: used alone, by its
    fully-qualified name, from the installed copy, its defaults still resolve to the shared values."""
    roles = installed["collections"] / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"] / "roles"
    stack = yaml.safe_load((roles / "stack" / "defaults" / "main.yml").read_text())
    expected = shared_defaults(stack)
    # Every installed role whose defaults refer to a stack value is checked here, with each such variable.
    for role in sorted(path.name for path in roles.iterdir()):
        defaults = yaml.safe_load((roles / role / "defaults" / "main.yml").read_text()) or {}
        referring = {name for name, value in defaults.items() if "stack_" in str(value)}
        assert referring == set(expected.get(role, {})), role
    facts = installed["work"] / "facts.d"
    facts.mkdir(exist_ok=True)
    plays = ""
    for role, variables in expected.items():
        resolved = "{" + ", ".join(f"'{name}': {name}" for name in variables) + "}"
        plays += ALONE_PLAY.format(
            fqcn=f"{FQCN}.{role}", facts=facts, result=installed["work"] / f"{role}.json", variables=resolved
        )
    # The monitoring role's exporter address needs an address for the host.
    result = _playbook(installed, "alone.yml", plays, "--tags", "alone", "-e", "monitoring_address=127.0.0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{FQCN}.stack : Validating arguments" in result.stdout
    for role, variables in expected.items():
        assert json.loads((installed["work"] / f"{role}.json").read_text()) == variables, role
