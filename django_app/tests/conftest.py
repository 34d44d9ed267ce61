"""Shared fixtures: TF Serving stand-in containers, a silent server, the client pointed at them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tfsp_client import ClientConfig, TFServingClient

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_IMAGE = os.environ.get("TFSP_STANDIN_IMAGE", "tfsp/tf-serving-standin:latest")
MODEL_BASE = Path(os.environ.get("TFSP_TEST_MODEL_BASE", REPO_ROOT / "build" / "models"))
MODEL_NAME = "calculator"


def pytest_configure(config: pytest.Config) -> None:
    """Turn SIGTERM (a CI timeout, a killed job) into an interrupt so the containers are still removed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """host:port of a TCP server that accepts connections and never answers (a hung TF Serving)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@dataclass
class StandIn:
    """One TF Serving stand-in container with its published gRPC and REST ports."""

    name: str
    grpc_port: int
    rest_port: int

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_target(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", "2", self.name], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run(["docker", "start", self.name], check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], check=False, capture_output=True)

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", "--tail", "30", self.name], capture_output=True, text=True)
        return result.stdout + result.stderr


def wait_until_available(targets: list[str], timeout: float = 120) -> None:
    """Wait until every target reports the model AVAILABLE over gRPC."""
    client = TFServingClient(ClientConfig(targets=tuple(targets), model_name=MODEL_NAME, timeout_seconds=2))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if all(status.available for status in client.host_statuses()):
                return
            time.sleep(0.5)
    finally:
        client.close()
    raise AssertionError(
        f"TF Serving stand-ins {targets} did not report {MODEL_NAME} AVAILABLE in {timeout}s"
    )


@pytest.fixture(scope="session")
def standin_image() -> str:
    """The stand-in image; missing means the build step was skipped, which is an error, not a skip."""
    result = subprocess.run(["docker", "image", "inspect", STANDIN_IMAGE], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"image {STANDIN_IMAGE} is missing: build it first (make standin-image)")
    if not (MODEL_BASE / MODEL_NAME).is_dir():
        pytest.fail(f"no exported model in {MODEL_BASE / MODEL_NAME}: export it first (make models)")
    return STANDIN_IMAGE


@pytest.fixture(scope="session")
def standins(standin_image: str) -> Iterator[list[StandIn]]:
    """Two stand-in containers serving the exported calculator model (removed at the end)."""
    run_id = uuid.uuid4().hex[:8]
    containers: list[StandIn] = []
    try:
        for index in (1, 2):
            standin = StandIn(f"webapp-test-{run_id}-{index}", free_port(), free_port())
            containers.append(standin)
            subprocess.run(
                [
                    "docker", "run", "-d", "--init", "--name", standin.name,
                    "-p", f"127.0.0.1:{standin.grpc_port}:8500",
                    "-p", f"127.0.0.1:{standin.rest_port}:8501",
                    "-v", f"{MODEL_BASE.resolve()}:/models:ro",
                    "-e", f"MODEL_NAME={MODEL_NAME}",
                    standin_image,
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
        try:
            wait_until_available([c.grpc_target for c in containers])
        except AssertionError as error:
            raise AssertionError(f"{error}\n" + "\n".join(c.logs() for c in containers)) from None
        yield containers
    finally:
        for standin in containers:
            standin.remove()


@pytest.fixture
def running_standins(standins: list[StandIn]) -> list[StandIn]:
    """The stand-ins, each running and AVAILABLE (a previous test may have stopped one)."""
    for standin in standins:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", standin.name], capture_output=True, text=True
        ).stdout.strip()
        if state != "true":
            standin.start()
    wait_until_available([c.grpc_target for c in standins])
    return standins


@pytest.fixture
def use_standins(settings, running_standins: list[StandIn]) -> list[StandIn]:
    """Point the web app at both stand-ins over gRPC."""
    settings.TFSP_TF_SERVING_TARGETS = [c.grpc_target for c in running_standins]
    settings.TFSP_TF_SERVING_REST_TARGETS = [c.rest_target for c in running_standins]
    settings.TFSP_TF_SERVING_PROTOCOL = "grpc"
    return running_standins
