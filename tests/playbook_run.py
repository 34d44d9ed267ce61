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
