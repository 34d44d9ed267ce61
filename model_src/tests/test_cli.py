"""The command line: one-line user errors with a non-zero exit, and a real export."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_src.tests.conftest import MODEL_NAME, WatchedExport

REPO_ROOT = Path(__file__).resolve().parents[2]


# Root writes through directory permissions by its capabilities, not by its uid: dropping these from
# the bounding set runs the CLI as root would run without them, like an unprivileged user.
WITHOUT_PERMISSION_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
WITHOUT_PERMISSION_BYPASS.append("--inh-caps=-dac_override,-dac_read_search,-fowner")


def _cli(*args: str | Path, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = WITHOUT_PERMISSION_BYPASS if unprivileged and os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "model_src.export", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0]


@pytest.mark.parametrize("version", ["abc", "1.5", "-1", "", "9223372036854775808"])
def test_bad_version_is_one_line(tmp_path: Path, version: str) -> None:
    result = _cli("--model-base", tmp_path, "--name", MODEL_NAME, "--version", version)
    _assert_one_line_error(result, "version must be")
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_existing_version_is_one_line(first_export: WatchedExport) -> None:
    result = _cli("--model-base", first_export.model_base, "--name", MODEL_NAME, "--version", "1")
    _assert_one_line_error(result, "version 1 of calculator already exists")
    assert result.returncode == 1


def test_unwritable_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _cli("--model-base", blocker / "models", "--name", MODEL_NAME, "--version", "1")
    _assert_one_line_error(result, "cannot create")
    assert result.returncode == 1


def test_read_only_directory_is_one_line(tmp_path: Path) -> None:
    model_dir = tmp_path / MODEL_NAME
    model_dir.mkdir()
    model_dir.chmod(0o555)
    try:
        result = _cli("--model-base", tmp_path, "--name", MODEL_NAME, unprivileged=True)
    finally:
        model_dir.chmod(0o755)
    _assert_one_line_error(result, "not writable")


def test_bad_name_is_one_line(tmp_path: Path) -> None:
    _assert_one_line_error(_cli("--model-base", tmp_path, "--name", "../escape"), "model name must match")


def test_missing_argument_is_one_line() -> None:
    _assert_one_line_error(_cli("--name", MODEL_NAME), "--model-base")


def test_export_with_next_version(tmp_path: Path, first_export: WatchedExport) -> None:
    """A real CLI run: no --version after an existing 3 gives 4, printed on stdout."""
    shutil.copytree(first_export.version_dir, tmp_path / MODEL_NAME / "3")
    result = _cli("--model-base", tmp_path, "--name", MODEL_NAME)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / MODEL_NAME / "4")
    assert (tmp_path / MODEL_NAME / "4" / "saved_model.pb").is_file()
    assert "Traceback" not in result.stderr
