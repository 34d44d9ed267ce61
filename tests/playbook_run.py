"""Runs a test's playbook with ansible-playbook on this machine, as the repository's config has it.

The repository's ansible.cfg maps this tree as the collection tfsp.serving and finds its roles; facts
are gathered on every run and kept in memory only (its fact cache would keep one run's facts for the
next under `gathering = smart`, and would hold the test's hosts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_CACHE_PLUGIN": "memory",
}


def run_playbook(
    playbook: Path, *options: str, inventory: str = "localhost,", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """ansible-playbook on ``playbook`` over a local connection, from the playbook's directory."""
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i", inventory,
        "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
        *options,
        str(playbook),
    ]  # fmt: skip
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=playbook.parent,
        env={**os.environ, **ENV, **(env or {})},
        check=False,
    )


def run_beside_roles(
    tmp_path: Path, playbook_text: str, inventory: dict, *options: str
) -> subprocess.CompletedProcess:
    """``playbook_text`` written into ``tmp_path`` next to the repository's roles (found by short name,
    as from site.yml) and run on ``inventory`` (a dict, written as YAML) with ``options``."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(playbook_text)
    (tmp_path / "roles").symlink_to(REPO_ROOT / "roles")
    inventory_file = tmp_path / "inventory.yml"
    inventory_file.write_text(yaml.safe_dump(inventory))
    return run_playbook(
        playbook, *options, inventory=str(inventory_file), env={"ANSIBLE_ROLES_PATH": str(tmp_path / "roles")}
    )
