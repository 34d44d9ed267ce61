"""Helpers for the TF Serving stand-in's conformance tests (containers, model bases).

The tests drive the real image (tfsp/tf-serving-standin:latest, built by
`make standin-image`) in Docker with the official gRPC stubs from
tensorflow-serving-api and plain HTTP. Each container gets a temporary model
base bind-mounted at /models, holds a `standin-test-` name and is always removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("STANDIN_IMAGE", "tfsp/tf-serving-standin:latest")
STARTUP_TIMEOUT = 120


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a docker CLI command and capture its output."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Container:
    """A running stand-in container and the host addresses of its ports."""

    name: str
    model_base: Path
    grpc_target: str = ""
    rest_url: str = ""
    channel: grpc.Channel | None = None
    extra: dict = field(default_factory=dict)

    def logs(self) -> str:
        """stdout + stderr of the container so far."""
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def running(self) -> bool:
        """Whether the container is still running."""
        result = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return result.stdout.strip() == "true"


def _host_port(name: str, port: int) -> str:
    out = docker("port", name, f"{port}/tcp").stdout.strip().splitlines()[0]
    return out.replace("0.0.0.0", "127.0.0.1")  # noqa: S104 - reading docker port output


def start_container(
    model_base: Path, *args: str, env: dict[str, str] | None = None, label: str = "x"
) -> Container:
    """Start the image with the model base at /models and wait until gRPC answers GetModelStatus."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    name = f"standin-test-{label}-{uuid.uuid4().hex[:8]}"
    env_args = [item for key, value in (env or {}).items() for item in ("-e", f"{key}={value}")]
    docker(
        "run", "-d", "--name", name, "-p", "127.0.0.1::8500", "-p", "127.0.0.1::8501",
        "-v", f"{model_base}:/models", *env_args, IMAGE, *args,
    )  # fmt: skip
    container = Container(name, model_base)
    try:
        container.grpc_target = _host_port(name, 8500)
        container.rest_url = "http://" + _host_port(name, 8501)
        container.channel = grpc.insecure_channel(container.grpc_target)
        stub = model_service_pb2_grpc.ModelServiceStub(container.channel)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        model = (env or {}).get("MODEL_NAME", "calculator")
        while True:
            if not container.running():
                raise AssertionError(f"stand-in exited during start-up:\n{container.logs()}")
            try:
                stub.GetModelStatus(
                    get_model_status_pb2.GetModelStatusRequest(model_spec={"name": model}), timeout=2
                )
                return container
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"stand-in not ready in {STARTUP_TIMEOUT}s:\n{container.logs()}"
                    ) from None
                time.sleep(0.5)
    except BaseException:
        stop_container(container)
        raise


def stop_container(container: Container) -> None:
    """Remove the container (whatever state it is in)."""
    if container.channel is not None:
        container.channel.close()
    docker("rm", "-f", "-v", container.name, check=False)


def add_version(model_dir: Path, source: Path, version: int) -> Path:
    """Publish a copy of a version directory as `version`, atomically (copy aside, then rename)."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(source, staging)
    target = model_dir / str(version)
    staging.rename(target)
    return target


def write_config(path: Path, text: str) -> None:
    """Replace a config file atomically, so a poller never reads half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def make_model_base(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh model base directory the container can write and read."""
    base = tmp_path_factory.mktemp(name)
    base.chmod(0o755)
    return base


def rest_json(response: requests.Response) -> dict:
    """The JSON body of a REST answer (NaN/Infinity tokens allowed, as TF Serving writes them)."""
    return json.loads(response.text)
