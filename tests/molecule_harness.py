"""What the Molecule tests need besides running Molecule: the matrix, and reading the verifier's results.

Molecule's exit code says little about the verifier: it succeeds with "Skipping, no tests found."
when a scenario's tests directory is empty or testinfra is not configured, and tests skipped inside
the verifier never reach the outer pytest. So the verifier writes a JUnit XML report (pytest's own
``--junitxml``, passed through ``PYTEST_ADDOPTS``), and a scenario passes only if that report shows
at least one test, no failure or error, and no skip other than the ones the matrix file allows by
name, with a reason.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
MATRIX_FILE = REPO_ROOT / "tests" / "molecule_matrix.yml"
MATRIX_KEYS = {"all", "default", "scenarios", "allowed_skips"}


class MatrixError(ValueError):
    """tests/molecule_matrix.yml names something that does not exist."""


def scenarios(root: Path = REPO_ROOT) -> list[Path]:
    """Every scenario directory: each role's, then the multi-host ones under molecule/."""
    found = sorted(root.glob("roles/*/molecule/*/molecule.yml"))
    found += sorted(root.glob("molecule/*/molecule.yml"))
    return [path.parent for path in found]


def load_matrix(root: Path = REPO_ROOT, text: str | None = None) -> dict:
    """The matrix file, checked: a misspelt key must not silently drop a run."""
    matrix = yaml.safe_load(
        text if text is not None else (root / "tests" / "molecule_matrix.yml").read_text()
    )
    if not isinstance(matrix, dict):
        raise MatrixError("molecule_matrix.yml: expected a mapping")
    unknown = set(matrix) - MATRIX_KEYS
    if unknown:
        raise MatrixError(
            f"molecule_matrix.yml: unknown keys {sorted(unknown)} (known: {sorted(MATRIX_KEYS)})"
        )
    releases = matrix.get("all")
    if not isinstance(releases, list) or not releases:
        raise MatrixError("molecule_matrix.yml: `all` must list the releases")
    known = {str(scenario.relative_to(root)) for scenario in scenarios(root)}
    listed = dict(matrix.get("scenarios") or {}) | {"default": matrix.get("default")}
    for key, distros in listed.items():
        if key != "default" and key not in known:
            raise MatrixError(f"molecule_matrix.yml: no scenario {key!r} (scenarios: {sorted(known)})")
        if not isinstance(distros, list) or not distros or not set(distros) <= set(releases):
            raise MatrixError(
                f"molecule_matrix.yml: {key}: releases must be a non-empty list from {releases}"
            )
    for key, skips in (matrix.get("allowed_skips") or {}).items():
        if key not in known:
            raise MatrixError(f"molecule_matrix.yml: allowed_skips: no scenario {key!r}")
        if not isinstance(skips, dict) or not all(
            isinstance(reason, str) and reason for reason in skips.values()
        ):
            raise MatrixError(f"molecule_matrix.yml: allowed_skips: {key}: map each test name to a reason")
    return matrix


def cases(run_all: bool, root: Path = REPO_ROOT) -> list[tuple[Path, str]]:
    """(scenario, release) pairs to run: the matrix's, or every release with ``run_all``."""
    matrix = load_matrix(root)
    found = []
    for scenario in scenarios(root):
        key = str(scenario.relative_to(root))
        distros = matrix["all"] if run_all else matrix.get("scenarios", {}).get(key, matrix["default"])
        found += [(scenario, distro) for distro in distros]
    return found


def allowed_skips(scenario_key: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """Test name -> reason, for the skips a scenario may have."""
    return dict((load_matrix(root).get("allowed_skips") or {}).get(scenario_key) or {})


MESSAGE_LIMIT = 1500


def _failed_line(name: str, message: str) -> str:
    """'failed: name', with the start of pytest's message when the report has one."""
    if not message:
        return f"failed: {name}"
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + " [...]"
    return f"failed: {name}: {message}"


@dataclass
class VerifierResult:
    """The verifier's JUnit report, reduced to what the harness checks."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> skip message
    # name -> the failure's message (pytest's assertion text), so that a CI log says why
    messages: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.skipped)

    def counts(self) -> str:
        return f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"

    def problems(self, allowed: dict[str, str]) -> list[str]:
        """Why this report is not a pass (empty when it is)."""
        found = []
        if self.total == 0:
            found.append("the verifier ran no test")
        found += [_failed_line(name, self.messages.get(name, "")) for name in self.failed]
        found += [
            f"skipped without an opt-out in molecule_matrix.yml: {name} ({message})"
            for name, message in self.skipped.items()
            if name not in allowed
        ]
        return found


def read_junit(path: Path) -> VerifierResult:
    """Parse pytest's JUnit XML (one or more test suites)."""
    result = VerifierResult()
    root = ET.parse(path).getroot()  # noqa: S314 - our own verifier's report
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        skipped = case.find("skipped")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            result.failed.append(name)
            result.messages[name] = failure.get("message", "")
        elif skipped is not None:
            result.skipped[name] = skipped.get("message", "")
        else:
            result.passed.append(name)
    return result
