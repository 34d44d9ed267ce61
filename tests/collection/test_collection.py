"""The roles as the installed collection tfsp.serving, used from a playbook outside the repository.

The collection is built from this tree, installed offline from its tarball into an empty path, and
a playbook in a temporary directory runs the tf_serving role by its fully-qualified name. That role
calls the collection's filter plugins by their collection names, so the run also shows that the
plugins resolve from the installed copy: nothing of the repository is on the path (its ansible.cfg
maps the clone as the collection; here a config of the test's own replaces it).
"""

from __future__ import annotations

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
ROLES = sorted(path.name for path in (REPO_ROOT / "roles").iterdir() if (path / "tasks").is_dir())
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
    assert top == {"CHANGELOG.md", "FILES.json", "MANIFEST.json", "README.md", "meta", "plugins", "roles"}
    assert "plugins/filter/tf_serving_versions.py" in names
    assert "plugins/filter/monitoring.py" in names
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


def _playbook(installed, name: str, text: str) -> subprocess.CompletedProcess:
    path = installed["work"] / name
    path.write_text(text)
    return installed["run"](
        str(BIN / "ansible-playbook"),
        "-i", "localhost,",
        "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
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
