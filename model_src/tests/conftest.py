"""Session fixtures: the calculator is exported once (watched) and loaded once per test run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from model_src.export import export_model
from model_src.tests.watch import Observations, VersionWatcher

if TYPE_CHECKING:
    from model_src.validate import LoadedModel

MODEL_NAME = "calculator"


@dataclass(frozen=True)
class WatchedExport:
    """The first export of a fresh model base and what a concurrent watcher saw meanwhile."""

    model_base: Path
    version_dir: Path
    seen: Observations


@pytest.fixture(scope="session")
def first_export(tmp_path_factory: pytest.TempPathFactory) -> WatchedExport:
    """Export the calculator once, with no --version, into a new model base."""
    model_base = tmp_path_factory.mktemp("models")
    model_dir = model_base / MODEL_NAME
    model_dir.mkdir()
    with VersionWatcher(model_dir) as watcher:
        version_dir = export_model(model_base, MODEL_NAME)
    return WatchedExport(model_base, version_dir, watcher.seen)


@pytest.fixture(scope="session")
def version_dir(tmp_path_factory: pytest.TempPathFactory, first_export: WatchedExport) -> Path:
    """A read-only copy of the first export, safe from tests that export again into its base."""
    copy = tmp_path_factory.mktemp("pristine") / "1"
    shutil.copytree(first_export.version_dir, copy)
    return copy


@pytest.fixture(scope="session")
def loaded_model(version_dir: Path) -> Iterator[LoadedModel]:
    """The exported model loaded the way TF Serving loads it (SavedModel loader + session)."""
    from model_src.validate import LoadedModel  # imports TensorFlow: only tests that need it pay

    with LoadedModel(version_dir) as model:
        yield model
