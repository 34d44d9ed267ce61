"""The image build's own scripts (tests/images/tf-serving-standin/), run without Docker."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "images" / "tf-serving-standin"


def _load(name: str):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(SCRIPTS / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


unguarded_imports = _load("unguarded-imports")


def _lines(source: str) -> list[int]:
    return list(unguarded_imports.unguarded(textwrap.dedent(source), "h5py"))


def test_an_import_at_module_level_fails_without_the_package():
    assert _lines("import os\nimport h5py\n") == [2]
    assert _lines("from h5py import File\n") == [1]
    assert _lines("import h5py.h5f as h5f\n") == [1]
    assert _lines("if True:\n    import h5py\n") == [2]
    assert _lines("class Saver:\n    import h5py\n") == [2]  # a class body runs at import


def test_an_import_guarded_by_an_import_error_handler_does_not():
    assert _lines("try:\n    import h5py\nexcept ImportError:\n    h5py = None\n") == []
    assert _lines("try:\n    import h5py\nexcept (OSError, ModuleNotFoundError):\n    pass\n") == []
    assert _lines("try:\n    import h5py\nexcept:\n    pass\n") == []


def test_a_handler_that_does_not_catch_import_error_guards_nothing():
    assert _lines("try:\n    import h5py\nexcept ValueError:\n    pass\n") == [2]
    # The handlers, else and finally of a guarded try are not guarded by it.
    source = "try:\n    pass\nexcept ImportError:\n    import h5py\nelse:\n    import h5py.h5\n"
    assert _lines(source) == [4, 6]


def test_an_import_in_a_function_runs_only_when_called():
    assert _lines("def load(path):\n    import h5py\n    return h5py.File(path)\n") == []
    assert _lines("opener = lambda: __import__('h5py')\n") == []
    assert _lines("class Saver:\n    def save(self):\n        import h5py\n") == []


def test_other_packages_and_relative_imports_are_not_counted():
    assert _lines("import h5pyx\nimport numpy\nfrom . import h5py\nfrom .h5py import File\n") == []


def test_the_command_lists_the_places_and_fails(tmp_path):
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text("import numpy\nimport h5py\n")
    good.write_text("try:\n    import h5py\nexcept ImportError:\n    h5py = None\n")
    script = [sys.executable, str(SCRIPTS / "unguarded-imports"), "h5py"]
    failed = subprocess.run([*script, str(good), str(bad)], capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert failed.stdout.split() == [f"{bad}:2"]
    assert "h5py is imported unguarded" in failed.stderr
    passed = subprocess.run([*script, str(good)], capture_output=True, text=True, check=False)
    assert (passed.returncode, passed.stdout) == (0, "")
