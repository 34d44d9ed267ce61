"""Runs every Molecule scenario of the repository as a pytest test.

Scenarios are discovered (roles/*/molecule/* and molecule/*), so a new role's
scenario is tested without registering it anywhere; tests/molecule_matrix.yml
says which Debian releases each one runs on. One scenario runs at a time: the
machine has two cores and one Docker engine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = REPO_ROOT / "build" / "molecule-logs"
SCENARIO_TIMEOUT_SECONDS = 45 * 60


def _scenarios() -> list[Path]:
    found = sorted(REPO_ROOT.glob("roles/*/molecule/*/molecule.yml"))
    found += sorted(REPO_ROOT.glob("molecule/*/molecule.yml"))
    return [path.parent for path in found]


def _matrix() -> list[tuple[Path, str]]:
    matrix = yaml.safe_load((REPO_ROOT / "tests" / "molecule_matrix.yml").read_text())
    run_all = os.environ.get("MOLECULE_MATRIX") == "all"
    cases = []
    for scenario in _scenarios():
        key = str(scenario.relative_to(REPO_ROOT))
        distros = matrix["all"] if run_all else matrix["scenarios"].get(key, matrix["default"])
        cases += [(scenario, distro) for distro in distros]
    return cases


def _case_id(case: tuple[Path, str]) -> str:
    scenario, distro = case
    return f"{scenario.relative_to(REPO_ROOT)}@{distro}"


@pytest.mark.molecule
@pytest.mark.docker
@pytest.mark.parametrize("case", _matrix(), ids=_case_id)
def test_molecule_scenario(case: tuple[Path, str]) -> None:
    scenario, distro = case
    project_dir = scenario.parent.parent
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / (_case_id(case).replace("/", "_") + ".log")
    env = dict(os.environ, MOLECULE_DISTRO=distro, ANSIBLE_FORCE_COLOR="false", PY_COLORS="0")
    with log_path.open("w") as log:
        result = subprocess.run(
            ["molecule", "test", "--scenario-name", scenario.name],
            cwd=project_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=SCENARIO_TIMEOUT_SECONDS,
            check=False,
        )
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-80:]
        pytest.fail(f"molecule test failed (full log: {log_path})\n" + "\n".join(tail))
