"""The web venv is what a web host gets: no TensorFlow, the protos wheel, a clean deploy check."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(sys.executable).parent


def test_no_tensorflow_distribution_in_the_web_venv():
    names = {dist.metadata["Name"].lower().replace("_", "-") for dist in importlib.metadata.distributions()}
    assert not {n for n in names if n.startswith(("tensorflow", "tf-nightly", "keras", "tensorboard"))}
    assert {"tfsp-calculator-web", "tfsp-serving-protos", "grpcio", "protobuf", "django"} <= names


def test_protos_wheel_has_only_generated_modules():
    files = importlib.metadata.distribution("tfsp-serving-protos").files
    modules = [f for f in files if f.suffix == ".py" and f.name != "__init__.py"]
    assert 30 <= len(modules) <= 60
    assert all(f.stem.endswith(("_pb2", "_pb2_grpc")) for f in modules)
    requires = importlib.metadata.requires("tfsp-serving-protos")
    assert sorted(r.split("<")[0].split(">")[0] for r in requires) == ["grpcio", "protobuf"]


@pytest.mark.parametrize(
    "module",
    [
        "tensorflow_serving.apis.prediction_service_pb2_grpc",
        "tensorflow_serving.apis.model_service_pb2_grpc",
        "tensorflow_serving.apis.predict_pb2",
        "tensorflow_serving.apis.classification_pb2",
        "tensorflow_serving.apis.regression_pb2",
        "tensorflow_serving.apis.get_model_metadata_pb2",
        "tensorflow_serving.apis.get_model_status_pb2",
        "tensorflow.core.example.example_pb2",
        "tfsp_client",
    ],
)
def test_client_modules_import_without_tensorflow(module):
    importlib.import_module(module)
    # the "tensorflow" package here holds generated messages only, not the TensorFlow library
    assert not hasattr(importlib.import_module("tensorflow"), "constant")


def test_client_module_does_not_import_django():
    code = "import sys, tfsp_client; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def production_env(tmp_path: Path) -> dict[str, str]:
    """The environment a web host's service gets (what the deployment role sets)."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "calculator.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://calculator.example.com",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "TFSP_TF_SERVING_TARGETS": "tfs1.example.com:8500,tfs2.example.com:8500",
    }


def test_check_deploy_reports_no_issues(tmp_path):
    result = subprocess.run(
        [SCRIPTS / "calculator-web-manage", "check", "--deploy", "--fail-level", "WARNING"],
        env=production_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_missing_secret_key_is_one_clear_line(tmp_path):
    env = production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run(
        [SCRIPTS / "calculator-web-manage", "check"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_collectstatic_writes_hashed_assets(tmp_path):
    env = production_env(tmp_path)
    subprocess.run(
        [SCRIPTS / "calculator-web-manage", "collectstatic", "--noinput"], env=env, cwd=tmp_path, check=True,
        capture_output=True,
    )  # fmt: skip
    static = tmp_path / "static"
    assert (static / "staticfiles.json").is_file()
    assert list(static.glob("calculator_web/style.*.css"))


def test_protobuf_runtime_is_not_older_than_the_gencode():
    import tensorflow_serving.apis.predict_pb2 as predict_pb2
    from google.protobuf import __version__ as runtime

    header = Path(predict_pb2.__file__).read_text().split("# Protobuf Python Version: ")[1].split()[0]
    gencode = tuple(int(part) for part in header.split("."))
    assert tuple(int(part) for part in runtime.split(".")[:3]) >= gencode
    requires = " ".join(importlib.metadata.requires("tfsp-serving-protos"))
    assert f"protobuf<8,>={header}" in requires
