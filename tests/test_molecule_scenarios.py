"""Runs every Molecule scenario of the repository as a pytest test, and checks what its verifier did.

Scenarios are discovered (roles/*/molecule/* and molecule/*), so a new role's scenario is tested
without registering it anywhere; tests/molecule_matrix.yml says which Debian releases each one runs
on. One pytest runs its scenarios one at a time; `make test` runs two such pytests at once (its
lanes, in the Makefile), the full-stack scenario with nothing beside it.

A scenario passes only when Molecule succeeds AND its testinfra verifier ran tests, none failed and
none skipped without a named opt-out (tests/molecule_harness.py). The verifier's counts are printed
in this run's summary.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from molecule_harness import REPO_ROOT, allowed_skips, cases, read_junit

LOG_DIR = REPO_ROOT / "build" / "molecule-logs"
SCENARIO_TIMEOUT_SECONDS = 50 * 60

# Filled by the scenario tests, printed by tests/conftest.py's terminal summary.
VERIFIER_COUNTS: dict[str, str] = {}


def _case_id(case) -> str:
    scenario, distro = case
    return f"{scenario.relative_to(REPO_ROOT)}@{distro}"


@pytest.mark.molecule
@pytest.mark.docker
@pytest.mark.parametrize("case", cases(os.environ.get("MOLECULE_MATRIX") == "all"), ids=_case_id)
def test_molecule_scenario(case) -> None:
    scenario, distro = case
    image = f"tfsp/testhost:{distro}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode:
        pytest.fail(
            f"no image {image}: build it with `tests/images/build testhost-{distro}` (or `make test-all`)"
        )
    project_dir = scenario.parent.parent
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stem = _case_id(case).replace("/", "_")
    log_path = LOG_DIR / f"{stem}.log"
    junit_path = LOG_DIR / f"{stem}.verifier.xml"
    junit_path.unlink(missing_ok=True)
    env = dict(
        os.environ,
        MOLECULE_DISTRO=distro,
        ANSIBLE_FORCE_COLOR="false",
        PY_COLORS="0",
        # Read by the verifier's pytest (testinfra), not by this one.
        PYTEST_ADDOPTS=f"--junitxml={junit_path} -o junit_family=xunit1",
    )
    with log_path.open("w") as log:
        try:
            result = subprocess.run(
                ["molecule", "test", "--scenario-name", scenario.name],
                cwd=project_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=SCENARIO_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # Molecule was killed before its own destroy step: remove the hosts it left.
            subprocess.run(
                ["molecule", "destroy", "--scenario-name", scenario.name],
                cwd=project_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=600,
                check=False,
            )
            pytest.fail(f"molecule test ran over {SCENARIO_TIMEOUT_SECONDS} s (full log: {log_path})")
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-80:])
    if not junit_path.exists():
        VERIFIER_COUNTS[_case_id(case)] = "no verifier report"
        pytest.fail(f"the verifier wrote no report: it ran no test (full log: {log_path})\n{tail}")
    verifier = read_junit(junit_path)
    VERIFIER_COUNTS[_case_id(case)] = verifier.counts()
    problems = verifier.problems(allowed_skips(str(scenario.relative_to(REPO_ROOT))))
    if result.returncode != 0 or problems:
        pytest.fail(
            f"molecule test exited {result.returncode}; verifier {verifier.counts()}"
            + "".join(f"\n  {line}" for line in problems)
            + f"\n(full log: {log_path})\n{tail}"
        )
