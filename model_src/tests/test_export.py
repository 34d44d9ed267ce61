"""Versioned, atomic export: numbering, --force, no half-written version visible, validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_src import export as export_module
from model_src.export import ExportError, export_model
from model_src.tests.conftest import MODEL_NAME, WatchedExport
from model_src.tests.watch import VersionWatcher

STAGING_PREFIX = ".export-"


def test_first_export_is_version_1(first_export: WatchedExport) -> None:
    assert first_export.version_dir == first_export.model_base / MODEL_NAME / "1"


def test_no_partial_version_ever_visible(first_export: WatchedExport) -> None:
    seen = first_export.seen
    # The watcher really ran during the build: it saw the staging directory.
    assert any(name.startswith(STAGING_PREFIX) for name in seen.names), seen.names
    assert seen.scans > 10
    assert seen.incomplete_versions == set()
    assert {name for name in seen.names if name.isdigit()} == {"1"}
    assert seen.version_sets[-1] == frozenset({"1"})


def test_staging_is_cleaned_up(first_export: WatchedExport) -> None:
    assert sorted(path.name for path in (first_export.model_base / MODEL_NAME).iterdir()) == ["1"]


def test_existing_version_refused(first_export: WatchedExport) -> None:
    before = (first_export.version_dir / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(ExportError, match="already exists"):
        export_model(first_export.model_base, MODEL_NAME, version=1)
    assert (first_export.version_dir / "saved_model.pb").stat().st_mtime_ns == before


def test_other_spelling_of_a_version_refused(tmp_path: Path) -> None:
    (tmp_path / MODEL_NAME / "007").mkdir(parents=True)
    with pytest.raises(ExportError, match="already exists"):
        export_model(tmp_path, MODEL_NAME, version=7)
    with pytest.raises(ExportError, match="remove it first"):
        export_model(tmp_path, MODEL_NAME, version=7, force=True)


@pytest.fixture(scope="module")
def versioned_base(tmp_path_factory: pytest.TempPathFactory, first_export: WatchedExport) -> Path:
    """A model base holding copies of the first export as versions 3 and 10 and a non-version."""
    base = tmp_path_factory.mktemp("versioned")
    model_dir = base / MODEL_NAME
    model_dir.mkdir()
    for version in ("3", "10"):
        shutil.copytree(first_export.version_dir, model_dir / version)
    (model_dir / "not-a-version").mkdir()
    return base


def test_auto_increment_and_force(versioned_base: Path) -> None:
    model_dir = versioned_base / MODEL_NAME
    with VersionWatcher(model_dir) as watcher:
        new = export_model(versioned_base, MODEL_NAME)
        assert new == model_dir / "11"
        old_pb = (model_dir / "3" / "saved_model.pb").stat().st_ino
        replaced = export_model(versioned_base, MODEL_NAME, version=3, force=True)
    assert replaced == model_dir / "3"
    assert (model_dir / "3" / "saved_model.pb").stat().st_ino != old_pb  # really replaced
    assert (model_dir / "3" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    seen = watcher.seen
    assert seen.incomplete_versions == set()
    # Version 3 never disappeared while --force replaced it; 11 appeared once, complete.
    assert all({"3", "10"} <= versions for versions in seen.version_sets), seen.version_sets
    assert seen.version_sets[-1] == frozenset({"3", "10", "11"})
    assert sorted(path.name for path in model_dir.iterdir()) == ["10", "11", "3", "not-a-version"]


def test_force_creates_a_missing_version(tmp_path: Path, first_export: WatchedExport) -> None:
    shutil.copytree(first_export.version_dir, tmp_path / MODEL_NAME / "1")
    created = export_model(tmp_path, MODEL_NAME, version=5, force=True)
    assert created == tmp_path / MODEL_NAME / "5"
    assert (created / "saved_model.pb").is_file()


@pytest.mark.parametrize("version", [-1, 2**63, 1.0, "2", True])
def test_bad_version_values(tmp_path: Path, version: object) -> None:
    with pytest.raises(ExportError, match="version must be"):
        export_model(tmp_path, MODEL_NAME, version=version)  # type: ignore[arg-type]
    assert not (tmp_path / MODEL_NAME).exists() or not any((tmp_path / MODEL_NAME).iterdir())


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "with space"])
def test_bad_model_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ExportError, match="model name"):
        export_model(tmp_path, name)


def test_unwritable_model_base(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot create"):
        export_model(blocker / "models", MODEL_NAME)


def _save_with_tf2_saver(export_dir: Path) -> None:
    """A real but wrong calculator: tf.saved_model.save writes every method name as predict."""
    import tensorflow as tf

    class Calculator(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)] * 2)
        def add(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"result": a + b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            parsed = tf.io.parse_example(inputs, {key: tf.io.FixedLenFeature([], tf.float32) for key in "ab"})
            return {"outputs": parsed["a"] + parsed["b"]}

    module = Calculator()
    signatures = {"add": module.add, "regress": module.regress}
    names = ("subtract", "multiply", "serving_default", "classify")
    tf.saved_model.save(
        module, str(export_dir), signatures={**signatures, **dict.fromkeys(names, module.add)}
    )


def test_validation_failure_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("model_src.calculator.save_calculator", _save_with_tf2_saver)
    status = export_module.main(["--model-base", str(tmp_path), "--name", MODEL_NAME])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == export_module.EXIT_VALIDATION_FAILED
    assert error[-1].startswith("export: error: the exported model failed validation, nothing was published")
    assert (
        "regress: method name 'tensorflow/serving/predict', expected 'tensorflow/serving/regress'"
        in error[-1]
    )
    assert list((tmp_path / MODEL_NAME).iterdir()) == []
