"""The Molecule harness's own checks: the matrix file and the verifier's report (no Docker)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from molecule_harness import MatrixError, VerifierResult, cases, load_matrix, read_junit, scenarios


def test_the_repository_matrix_is_valid_and_runs_every_scenario():
    load_matrix()
    ran = {scenario for scenario, _ in cases(run_all=False)}
    assert ran == set(scenarios())
    assert {distro for _, distro in cases(run_all=True)} == set(load_matrix()["all"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for scenario in ("roles/web/molecule/default", "molecule/stack"):
        (tmp_path / scenario).mkdir(parents=True)
        (tmp_path / scenario / "molecule.yml").write_text("---\n")
    return tmp_path


MATRIX = """
all: [bookworm, trixie]
default: [bookworm]
scenarios:
  roles/web/molecule/default: [bookworm, trixie]
"""


def test_a_valid_matrix_gives_its_cases(tree):
    (tree / "tests").mkdir()
    (tree / "tests/molecule_matrix.yml").write_text(MATRIX)
    found = [(str(s.relative_to(tree)), d) for s, d in cases(run_all=False, root=tree)]
    assert found == [
        ("roles/web/molecule/default", "bookworm"),
        ("roles/web/molecule/default", "trixie"),
        ("molecule/stack", "bookworm"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MATRIX.replace("roles/web/molecule/default", "roles/wbe/molecule/default"),
            "no scenario 'roles/wbe",
        ),
        (MATRIX.replace("scenarios:", "scenario:"), "unknown keys ['scenario']"),
        (MATRIX.replace("default: [bookworm, trixie]", "default: [bookworm, trixy]"), "releases must be"),
        (MATRIX.replace("default: [bookworm]", "default: []"), "releases must be"),
        (MATRIX + "allowed_skips:\n  molecule/stack: {test_x: ''}\n", "map each test name to a reason"),
        (MATRIX + "allowed_skips:\n  molecule/stak: {test_x: why}\n", "allowed_skips: no scenario"),
    ],
)
def test_a_misspelt_matrix_is_refused(tree, text, message):
    with pytest.raises(MatrixError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_matrix(tree, text)


def _junit(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "report.xml"
    path.write_text(
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{body}</testsuite></testsuites>'
    )
    return path


def test_a_report_with_passes_only_is_clean(tmp_path):
    result = read_junit(_junit(tmp_path, '<testcase name="test_a"/><testcase name="test_b"/>'))
    assert result.counts() == "2 passed, 0 failed, 0 skipped"
    assert result.problems({}) == []


def test_an_empty_report_is_a_failure(tmp_path):
    assert read_junit(_junit(tmp_path, "")).problems({}) == ["the verifier ran no test"]


def test_failures_errors_and_unlisted_skips_are_failures(tmp_path):
    body = textwrap.dedent(
        """
        <testcase name="test_ok"/>
        <testcase name="test_bad"><failure message="assert 1 == 2"/></testcase>
        <testcase name="test_broken_fixture"><error message="fixture"/></testcase>
        <testcase name="test_skipped"><skipped type="pytest.skip" message="side_effect not run"/></testcase>
        <testcase name="test_allowed"><skipped type="pytest.skip" message="no /proc/modules"/></testcase>
        """
    )
    result = read_junit(_junit(tmp_path, body))
    assert result.counts() == "1 passed, 2 failed, 2 skipped"
    assert result.problems({"test_allowed": "this kernel hides /proc/modules"}) == [
        "failed: test_bad: assert 1 == 2",
        "failed: test_broken_fixture: fixture",
        "skipped without an opt-out in molecule_matrix.yml: test_skipped (side_effect not run)",
    ]


def test_a_long_failure_message_is_cut(tmp_path):
    body = f'<testcase name="test_long"><failure message="{"x" * 5000}"/></testcase>'
    (line,) = read_junit(_junit(tmp_path, body)).problems({})
    assert line.startswith("failed: test_long: xxx")
    assert line.endswith(" [...]")
    assert len(line) < 1600


def test_counts_are_reported_for_the_summary():
    assert VerifierResult(passed=["a"], skipped={"b": "why"}).counts() == "1 passed, 0 failed, 1 skipped"
