"""Fixtures for the TF Serving stand-in's conformance tests (helpers: standin_support.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_support import (
    IMAGE,
    REPO_ROOT,
    Container,
    StandinPki,
    make_test_pki,
    start_container,
    stop_container,
)


@pytest.fixture(scope="session")
def standin_image() -> str:
    """The stand-in image, brought up to date with tests/standin's source first.

    `make standin-image` builds it beforehand; running the recipe's prebuild (which
    copies the current server source into the build context) and the image build
    again here is quick when nothing changed and keeps the tests from running an
    image older than the code they test.
    """
    if shutil.which("docker") is None:
        pytest.fail("docker CLI not found: the conformance tests need the Docker engine")
    if os.environ.get("STANDIN_IMAGE"):
        return IMAGE  # an image given from outside is used as it is
    recipe = REPO_ROOT / "tests/images/tf-serving-standin"
    subprocess.run([str(recipe / "prebuild")], check=True, timeout=1800)
    subprocess.run([str(REPO_ROOT / "tests/images/build"), "tf-serving-standin"], check=True, timeout=1800)
    return IMAGE


@pytest.fixture(scope="session")
def calculator_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported calculator version directory (model_src's export, with its warmup file)."""
    from model_src.export import export_model

    base = tmp_path_factory.mktemp("calculator-export")
    return export_model(base, "calculator", version=1)


@pytest.fixture(scope="session")
def pki() -> StandinPki:
    """A CA, server and client certificates for --ssl_config_file, made for this session only."""
    return make_test_pki()


@pytest.fixture(scope="module")
def container_factory(standin_image: str) -> Iterator:
    """Start containers on demand; remove them at the end of each test module.

    Not at the end of the session: `make test` runs the Molecule scenarios in the same session,
    and idle stand-ins (TensorFlow loaded in each) would run on beside the full stack's drills.
    """
    started: list[Container] = []

    def factory(model_base: Path, *args: str, **kwargs) -> Container:
        container = start_container(model_base, *args, **kwargs)
        started.append(container)
        return container

    yield factory
    for container in started:
        stop_container(container)
