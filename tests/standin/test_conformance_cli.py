"""The stand-in image's command line: the official entrypoint contract and flag errors."""

from __future__ import annotations

import pytest
from standin_support import IMAGE, docker

pytestmark = pytest.mark.docker


def test_image_contract(standin_image):
    inspect = docker("image", "inspect", "--format", "{{json .Config}}", standin_image).stdout
    import json

    config = json.loads(inspect)
    assert "MODEL_BASE_PATH=/models" in config["Env"]
    assert "MODEL_NAME=model" in config["Env"]
    assert set(config["ExposedPorts"]) == {"8500/tcp", "8501/tcp"}
    assert "stand-in" in config["Labels"]["org.opencontainers.image.title"].lower()
    entrypoint = docker("run", "--rm", "--entrypoint", "cat", standin_image, config["Entrypoint"][0]).stdout
    assert "--port=8500 --rest_api_port=8501" in entrypoint
    assert '--model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}"' in entrypoint
    assert entrypoint.rstrip().endswith('"$@"')  # `docker run` arguments become flags
    # As the official script, the shell does not exec: SIGTERM needs an init (test_conformance_lifecycle).
    assert "exec " not in entrypoint


def test_unknown_flag_fails_at_start(standin_image):
    result = docker("run", "--rm", "--name", "standin-test-flag", IMAGE, "--no_such_flag=1", check=False)
    assert result.returncode != 0
    assert "unknown command line flag 'no_such_flag'" in result.stderr


def test_version_flag_says_stand_in(standin_image):
    name = "standin-test-version"
    result = docker(
        "run", "--rm", "--name", name, "--entrypoint", "tensorflow_model_server", IMAGE, "--version"
    )
    assert "standin" in result.stdout
    assert "TensorFlow Library: 2.21.0" in result.stdout


def test_missing_base_path_fails_at_start(standin_image):
    result = docker(
        "run", "--rm", "--name", "standin-test-nobase", "-e", "MODEL_NAME=absent", IMAGE, check=False
    )
    assert result.returncode != 0
    assert "Could not find base path /models/absent" in result.stderr
