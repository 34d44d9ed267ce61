"""Mutual TLS on the gRPC channels, against a real TLS gRPC server in this process (no Docker).

The server requires a client certificate of the test CA, as TF Serving does with ``client_verify``.
The PKI is made with the ``openssl`` command for this session, in a temporary directory.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tfsp_client import ClientConfig, ConfigError, UpstreamUnavailable
from tfsp_client.grpc_transport import GrpcTransport, channel_options
from tfsp_client.tls import TlsFiles

from .test_startup_config import start

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def files(self, client: str = "client") -> TlsFiles:
        return TlsFiles(self.path("ca.crt"), self.path(f"{client}.crt"), self.path(f"{client}.key"))


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    key, crt, subject = f"{name}.key", f"{name}.crt", f"/CN={name}"
    ca = "basicConstraints=critical,CA:TRUE"
    _openssl(directory, "req", "-x509", *EC, "-keyout", key, "-out", crt, "-subj", subject, "-addext", ca)


def _leaf(directory: Path, name: str, ca: str, usage: str, san: str) -> None:
    signer = ["-CA", f"{ca}.crt", "-CAkey", f"{ca}.key"]
    extensions = ["basicConstraints=critical,CA:FALSE", f"extendedKeyUsage={usage}", f"subjectAltName={san}"]
    _openssl(
        directory,
        *[
            "req",
            "-x509",
            *EC,
            *signer,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-subj",
            f"/CN={name}",
        ],
        *[arg for extension in extensions for arg in ("-addext", extension)],
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _leaf(directory, "server", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    _leaf(directory, "client", "ca", "clientAuth", "DNS:web1")
    _leaf(directory, "foreign", "other-ca", "clientAuth", "DNS:intruder")
    return Pki(directory)


@pytest.fixture(scope="session")
def tls_server(pki) -> Iterator[str]:
    """localhost:port of a gRPC server with the health service, requiring a client certificate."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # Blocking Watch streams: in its default non-blocking mode, grpcio-health-checking's servicer
    # sends a Watch's first answer while holding its lock, and the stream's close callback (a client
    # channel gone before that answer left) waits for the same lock on the thread that would
    # complete the send: server.stop() then never returns. Blocking mode queues the answer instead.
    servicer = health.HealthServicer(experimental_non_blocking=False)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    read = lambda name: (pki.directory / name).read_bytes()  # noqa: E731
    credentials = grpc.ssl_server_credentials(
        [(read("server.key"), read("server.crt"))], root_certificates=read("ca.crt"), require_client_auth=True
    )
    port = server.add_secure_port("localhost:0", credentials)
    server.start()
    yield f"localhost:{port}"
    server.stop(None)


def _transport(target: str, tls: TlsFiles | None) -> GrpcTransport:
    return GrpcTransport(ClientConfig(targets=(target,), tls=tls))


def test_client_with_its_certificate_is_served(pki, tls_server):
    transport = _transport(tls_server, pki.files())
    try:
        transport.probe(tls_server, 5)  # the prober's call, and /readyz's channel
    finally:
        transport.close()


def test_channel_keeps_its_options_under_tls(pki, tls_server):
    config = ClientConfig(targets=(tls_server,), tls=pki.files())
    names = {name for name, _ in channel_options(config)}
    assert {"grpc.service_config", "grpc.enable_retries", "grpc.keepalive_time_ms"} <= names


@pytest.mark.parametrize("client", ["none", "foreign"])
def test_client_without_a_certificate_of_the_ca_is_refused(pki, tls_server, client):
    if client == "none":
        credentials = grpc.ssl_channel_credentials(root_certificates=(pki.directory / "ca.crt").read_bytes())
    else:
        credentials = pki.files("foreign").read()
        credentials = grpc.ssl_channel_credentials(credentials.ca, credentials.key, credentials.cert)
    with grpc.secure_channel(tls_server, credentials) as channel, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("client", ["plain", "other-ca"])
def test_client_without_tls_or_trusting_another_ca_gets_no_answer(pki, tls_server, client):
    # Plain gRPC to a TLS port; or TLS trusting another CA than the server's (no impostor accepted).
    tls = (
        None
        if client == "plain"
        else TlsFiles(pki.path("other-ca.crt"), pki.path("client.crt"), pki.path("client.key"))
    )
    transport = _transport(tls_server, tls)
    try:
        with pytest.raises(UpstreamUnavailable):
            transport.probe(tls_server, 5)
    finally:
        transport.close()


def test_all_three_files_or_none():
    assert TlsFiles.from_paths("", "", "") is None
    with pytest.raises(ConfigError) as missing:
        TlsFiles.from_paths("/ca.crt", "", "/client.key")
    assert missing.value.field == "tls_cert_file"


@pytest.mark.parametrize(
    ("field", "broken", "message"),
    [
        ("ca_file", "missing", "cannot read"),
        ("key_file", "directory", "cannot read"),
        ("cert_file", "not-pem", "does not hold a PEM certificate"),
        ("key_file", "certificate", "does not hold a PEM private key"),
    ],
)
def test_unreadable_or_wrong_file_names_its_field(pki, tmp_path, field, broken, message):
    replacement = {
        "missing": str(tmp_path / "absent.pem"),
        "directory": str(tmp_path),
        "not-pem": str(tmp_path / "garbage.pem"),
        "certificate": pki.path("client.crt"),
    }[broken]
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    paths = {
        "ca_file": pki.path("ca.crt"),
        "cert_file": pki.path("client.crt"),
        "key_file": pki.path("client.key"),
    }
    files = TlsFiles(**{**paths, field: replacement})
    with pytest.raises(ConfigError) as error:
        files.read()
    assert error.value.field == f"tls_{field}"
    assert message in str(error.value)


def test_rest_with_tls_is_refused(pki):
    with pytest.raises(ConfigError) as error:
        ClientConfig(targets=("a:8500",), rest_targets=("a:8501",), protocol="rest", tls=pki.files())
    assert error.value.field == "protocol"


def test_app_starts_with_good_tls_files(pki):
    env = {
        "TFSP_TF_SERVING_TLS_CA_FILE": pki.path("ca.crt"),
        "TFSP_TF_SERVING_TLS_CERT_FILE": pki.path("client.crt"),
        "TFSP_TF_SERVING_TLS_KEY_FILE": pki.path("client.key"),
    }
    result = start(env)
    assert result.returncode == 0, result.stderr
