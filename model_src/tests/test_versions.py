"""Version numbering and the atomic rename primitives, on real directories (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_src.versions import (
    STAGING_PREFIX,
    VersionError,
    make_staging_dir,
    next_version,
    parse_version,
    publish_new,
    publish_replace,
)


def _version(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_text(marker)
    return path


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("1", 1), ("007", 7), ("9223372036854775807", 2**63 - 1)]
)
def test_parse_version(text: str, expected: int) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "x", "-3", "+3", "1e3", "2.0", "9223372036854775808", "٣"])
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(VersionError):
        parse_version(text)


def test_next_version(tmp_path: Path) -> None:
    assert next_version(tmp_path / "missing") == 1
    assert next_version(tmp_path) == 1
    for name in ("2", "10", "not-a-version", ".export-123", "\u0663\u0663"):
        (tmp_path / name).mkdir()
    assert next_version(tmp_path) == 11
    (tmp_path / "12").write_text("an integer-named file still takes the number")
    assert next_version(tmp_path) == 13


def test_staging_dir_is_hidden_and_not_an_integer(tmp_path: Path) -> None:
    staging = make_staging_dir(tmp_path)
    assert staging.parent == tmp_path
    assert staging.name.startswith(STAGING_PREFIX)
    assert not staging.name.isdigit()


def test_publish_new_never_overwrites(tmp_path: Path) -> None:
    published = _version(tmp_path / "1", "old")
    built = _version(tmp_path / ".export-a" / "model", "new")
    with pytest.raises(FileExistsError):
        publish_new(built, published)
    assert (published / "saved_model.pb").read_text() == "old"
    empty = tmp_path / "2"
    empty.mkdir()
    with pytest.raises(FileExistsError):
        publish_new(built, empty)  # a plain rename(2) would silently replace an empty directory
    publish_new(built, tmp_path / "3")
    assert (tmp_path / "3" / "saved_model.pb").read_text() == "new"
    assert not built.exists()


def test_publish_replace_swaps_in_place(tmp_path: Path) -> None:
    published = _version(tmp_path / "1", "old")
    built = _version(tmp_path / ".export-a" / "model", "new")
    retired = tmp_path / ".export-a" / "retired"
    publish_replace(built, published, retired)
    assert (published / "saved_model.pb").read_text() == "new"
    assert (retired / "saved_model.pb").read_text() == "old"
