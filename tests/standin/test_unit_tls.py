"""``--ssl_config_file`` without Docker: the stand-in runs as a local process on free ports.

What TF Serving does (model_servers/server.cc, BuildServerCredentialsFromSSLConfigFile): the
file is a text-format SSLConfig with PEM contents; the gRPC port speaks TLS only, and with
``client_verify`` only to clients whose certificate verifies against ``custom_ca``; the REST port
stays plain HTTP; a file that cannot be read or parsed aborts the server after the models loaded;
credentials gRPC cannot use stop the start (``Failed to BuildAndStart gRPC server``, 255).
The certificates are made for the session in a temporary directory (standin_support.make_test_pki).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from standin_support import StandinPki, add_version, predict_add, refused_code
from tf_serving_standin import errors, flags, tls

STANDIN_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT = 120
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}
START_FAILED = "Failed to start server. Error: INVALID_ARGUMENT: Failed to BuildAndStart gRPC server"
CHECK_FAILED = "Non-OK-status: ParseProtoTextFile<SSLConfig>(ssl_config_file, &ssl_config)"


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, calculator_version) -> Path:
    base = tmp_path_factory.mktemp("tls-models")
    (base / "calculator").mkdir()
    add_version(base / "calculator", calculator_version, 1)
    return base


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def standin_command(model_base: Path, grpc_port: int, rest_port: int, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "tf_serving_standin.main",
        f"--port={grpc_port}", f"--rest_api_port={rest_port}",
        "--model_name=calculator", f"--model_base_path={model_base / 'calculator'}",
        "--file_system_poll_wait_seconds=0", *args,
    ]  # fmt: skip


def standin_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(STANDIN_DIR), "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclass
class Standin:
    """A stand-in process with TLS on its gRPC port."""

    process: subprocess.Popen
    grpc_port: int
    rest_port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"localhost:{self.grpc_port}"  # the name the test server certificate carries

    def log(self) -> str:
        return self.log_path.read_text()


def start_standin(model_base: Path, tmp_path: Path, *args: str) -> Standin:
    """Start the stand-in and wait for its REST port (it opens after the gRPC port)."""
    grpc_port, rest_port = free_port(), free_port()
    log_path = tmp_path / f"standin-{grpc_port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            standin_command(model_base, grpc_port, rest_port, *args),
            stdout=log, stderr=subprocess.STDOUT, env=standin_env(), cwd=tmp_path,
        )  # fmt: skip
    standin = Standin(process, grpc_port, rest_port, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"stand-in exited ({process.returncode}) during start-up:\n{standin.log()}")
        try:
            requests.get(f"http://127.0.0.1:{rest_port}/v1/models/calculator", timeout=2)
            return standin
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                stop_standin(standin)
                raise AssertionError(f"stand-in not ready in {STARTUP_TIMEOUT}s:\n{standin.log()}") from None
            time.sleep(0.5)


def stop_standin(standin: Standin) -> None:
    if standin.process.poll() is None:
        standin.process.send_signal(signal.SIGTERM)
        try:
            standin.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            standin.process.kill()
            standin.process.wait()


def write_ssl_config(directory: Path, text: str) -> Path:
    path = directory / "ssl.config"
    path.write_text(text)
    return path


def tls_channel(standin: Standin, pki: StandinPki, client: str | None = "good") -> grpc.Channel:
    return grpc.secure_channel(standin.target, pki.channel_credentials(client))


# -- parsing, in process ------------------------------------------------------------------------


def test_flag_is_implemented() -> None:
    assert "ssl_config_file" in flags.IMPLEMENTED
    assert flags.parse(["--model_base_path=/m", "--ssl_config_file=/c"]).ssl_config_file == "/c"


def test_ssl_config_holds_pem_contents(tmp_path, pki) -> None:
    parsed = tls.read_ssl_config(str(write_ssl_config(tmp_path, pki.ssl_config())))
    assert parsed.server_key.encode() == pki.server_key
    assert parsed.server_cert.encode() == pki.server_cert
    assert parsed.custom_ca.encode() == pki.ca_cert
    assert parsed.client_verify is True
    assert parsed.DESCRIPTOR.full_name == "tensorflow.serving.SSLConfig"
    assert [(f.name, f.number) for f in parsed.DESCRIPTOR.fields] == [
        ("server_key", 1), ("server_cert", 2), ("custom_ca", 3), ("client_verify", 4),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        (None, "NOT_FOUND", "{path}; No such file or directory"),
        ("server_key: 'unterminated", "INVALID_ARGUMENT", "Invalid protobuf file: '{path}'"),
        ("server_key_file: '/etc/key.pem'", "INVALID_ARGUMENT", "Invalid protobuf file: '{path}'"),
        ("client_verify: maybe", "INVALID_ARGUMENT", "Invalid protobuf file: '{path}'"),
    ],
)
def test_unreadable_or_invalid_ssl_config_status(tmp_path, text, code, message) -> None:
    path = tmp_path / "ssl.config"
    if text is not None:
        path.write_text(text)
    with pytest.raises(errors.ServingError) as info:
        tls.read_ssl_config(str(path))
    assert (info.value.code, info.value.message) == (code, message.format(path=path))


def test_no_file_means_plaintext() -> None:
    assert tls.server_credentials("") is None


def test_fatal_check_as_pid_1_exits_134(monkeypatch, caplog) -> None:
    """A container's PID 1 cannot die of its own SIGABRT: it exits as Docker reports TF Serving's abort."""

    def exit_(status: int) -> None:
        raise SystemExit(status)

    monkeypatch.setattr(tls.os, "getpid", lambda: 1)
    monkeypatch.setattr(tls.os, "_exit", exit_)
    monkeypatch.setattr(tls.os, "abort", lambda: pytest.fail("abort() as PID 1"))
    with pytest.raises(SystemExit) as info:
        tls.server_credentials("/nonexistent/ssl.config")
    assert info.value.code == 134
    assert caplog.records[-1].getMessage() == (
        f"{CHECK_FAILED}\nStatus: NOT_FOUND: /nonexistent/ssl.config; No such file or directory"
    )


# -- the stand-in as a process ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mutual_tls(model_base, pki, tmp_path_factory) -> Iterator[Standin]:
    """client_verify: true, custom_ca: the test CA; the health service on."""
    directory = tmp_path_factory.mktemp("mtls")
    config = write_ssl_config(directory, pki.ssl_config(client_verify=True))
    standin = start_standin(
        model_base, directory, f"--ssl_config_file={config}", "--enable_grpc_healthcheck_service=true"
    )
    yield standin
    stop_standin(standin)


def test_client_with_certificate_from_custom_ca_gets_predict(mutual_tls, pki) -> None:
    with tls_channel(mutual_tls, pki, "good") as channel:
        assert predict_add(channel) == [5.0]


@pytest.mark.parametrize("client", [None, "other"], ids=["no-client-certificate", "foreign-ca"])
def test_client_verify_refuses_clients_without_a_trusted_certificate(mutual_tls, pki, client) -> None:
    with tls_channel(mutual_tls, pki, client) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_is_refused(mutual_tls) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{mutual_tls.grpc_port}") as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_health_service_is_behind_the_same_tls(mutual_tls, pki) -> None:
    with tls_channel(mutual_tls, pki, "good") as channel:
        assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=10) == SERVING
    with grpc.insecure_channel(f"127.0.0.1:{mutual_tls.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(HEALTH_CHECK)(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_rest_port_stays_plain_http(mutual_tls) -> None:
    url = f"127.0.0.1:{mutual_tls.rest_port}/v1/models/calculator"
    response = requests.get(f"http://{url}", timeout=10)
    assert response.status_code == 200
    assert response.json()["model_version_status"][0]["state"] == "AVAILABLE"
    answer = requests.post(f"http://{url}:predict", json={"instances": [{"a": 1.0, "b": 2.0}]}, timeout=10)
    assert answer.json() == {"predictions": [3.0]}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{url}", timeout=10, verify=False)  # noqa: S501 - proving there is no TLS


def test_server_side_tls_without_client_verify(model_base, pki, tmp_path) -> None:
    """client_verify: false: any client that trusts the server certificate is served, none in plaintext."""
    config = write_ssl_config(tmp_path, pki.ssl_config(client_verify=False))
    standin = start_standin(model_base, tmp_path, f"--ssl_config_file={config}")
    try:
        with tls_channel(standin, pki, None) as channel:
            assert predict_add(channel) == [5.0]
        with tls_channel(standin, pki, "other") as channel:  # not requested, so not checked
            assert predict_add(channel) == [5.0]
        with grpc.secure_channel(standin.target, grpc.ssl_channel_credentials()) as channel:
            assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE  # server certificate not trusted
        with grpc.insecure_channel(f"127.0.0.1:{standin.grpc_port}") as channel:
            assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        stop_standin(standin)


def test_client_verify_without_custom_ca_refuses_every_client(model_base, pki, tmp_path) -> None:
    """TF Serving gives gRPC no client roots then: the server starts, no client certificate verifies."""
    config = write_ssl_config(tmp_path, pki.ssl_config(client_verify=True, custom_ca=False))
    standin = start_standin(model_base, tmp_path, f"--ssl_config_file={config}")
    try:
        for client in ("good", None):
            with tls_channel(standin, pki, client) as channel:
                assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        stop_standin(standin)


def run_to_exit(model_base: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = standin_command(model_base, free_port(), free_port(), *args)
    return subprocess.run(
        command, capture_output=True, text=True, env=standin_env(), cwd=tmp_path, timeout=STARTUP_TIMEOUT
    )


@pytest.mark.parametrize(
    ("text", "status"),
    [
        (None, "NOT_FOUND: {path}; No such file or directory"),
        ("server_key: 'a' server_key_file: 'b'", "INVALID_ARGUMENT: Invalid protobuf file: '{path}'"),
    ],
    ids=["missing", "unparseable"],
)
def test_unreadable_or_invalid_file_aborts_after_models_load(model_base, tmp_path, text, status) -> None:
    """TF_CHECK_OK in BuildServerCredentialsFromSSLConfigFile: a fatal log line, then SIGABRT."""
    path = tmp_path / "ssl.config"
    if text is not None:
        path.write_text(text)
    result = run_to_exit(model_base, tmp_path, f"--ssl_config_file={path}")
    assert result.returncode == -signal.SIGABRT, result.stderr
    assert f"{CHECK_FAILED}\nStatus: {status.format(path=path)}" in result.stderr
    loaded = result.stderr.index("Successfully loaded servable version {name: calculator version: 1}")
    assert loaded < result.stderr.index(CHECK_FAILED)
    assert "Running gRPC ModelServer" not in result.stderr


@pytest.mark.parametrize("mismatch", [False, True], ids=["empty-key-and-certificate", "key-not-matching"])
def test_credentials_grpc_cannot_use_stop_the_start(model_base, pki, tmp_path, mismatch) -> None:
    """gRPC refuses the port, BuildAndStart returns null: "Failed to start server", exit status 255."""
    if mismatch:
        text = pki.ssl_config(client_verify=False, server_key=pki.other_client_key)
    else:
        text = "client_verify: false\n"
    path = write_ssl_config(tmp_path, text)
    result = run_to_exit(model_base, tmp_path, f"--ssl_config_file={path}")
    assert result.returncode == 255, result.stderr
    assert START_FAILED in result.stderr
