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
    model_base: Path,
    *args: str,
    env: dict[str, str] | None = None,
    label: str = "x",
    credentials: grpc.ChannelCredentials | None = None,
    ready_via_rest: bool = False,
    docker_args: tuple[str, ...] = (),
) -> Container:
    """Start the image with the model base at /models and wait until gRPC answers GetModelStatus.

    ``credentials``: the gRPC port speaks TLS (--ssl_config_file); the channel uses them and checks
    the server certificate for the name ``localhost``. ``ready_via_rest``: wait for the REST port
    instead (it opens after the gRPC port), for servers no gRPC client can pass. ``docker_args``:
    more `docker run` options (user, capabilities, read-only root...).
    """
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    name = f"standin-test-{label}-{uuid.uuid4().hex[:8]}"
    env_args = [item for key, value in (env or {}).items() for item in ("-e", f"{key}={value}")]
    docker(
        "run", "-d", "--name", name, "-p", "127.0.0.1::8500", "-p", "127.0.0.1::8501",
        "-v", f"{model_base}:/models", *env_args, *docker_args, IMAGE, *args,
    )  # fmt: skip
    container = Container(name, model_base)
    try:
        container.grpc_target = _host_port(name, 8500)
        container.rest_url = "http://" + _host_port(name, 8501)
        if credentials is None:
            container.channel = grpc.insecure_channel(container.grpc_target)
        else:
            override = [("grpc.ssl_target_name_override", "localhost")]
            container.channel = grpc.secure_channel(container.grpc_target, credentials, options=override)
        stub = model_service_pb2_grpc.ModelServiceStub(container.channel)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        model = (env or {}).get("MODEL_NAME", "calculator")
        while True:
            if not container.running():
                raise AssertionError(f"stand-in exited during start-up:\n{container.logs()}")
            try:
                if ready_via_rest:
                    requests.get(f"{container.rest_url}/v1/models/{model}", timeout=2)
                else:
                    stub.GetModelStatus(
                        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": model}), timeout=2
                    )
                return container
            except (grpc.RpcError, requests.ConnectionError):
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


def calculator_model_base(tmp_path_factory: pytest.TempPathFactory, name: str, source: Path) -> Path:
    """A fresh model base serving the calculator export ``source`` as its version 1."""
    base = make_model_base(tmp_path_factory, name)
    (base / "calculator").mkdir()
    add_version(base / "calculator", source, 1)
    return base


def rest_json(response: requests.Response) -> dict:
    """The JSON body of a REST answer (NaN/Infinity tokens allowed, as TF Serving writes them)."""
    return json.loads(response.text)


# -- TLS (--ssl_config_file) ------------------------------------------------------------------


@dataclass
class StandinPki:
    """Throwaway PEMs made for one test session: never written to the repository."""

    ca_cert: bytes
    server_key: bytes
    server_cert: bytes
    client_key: bytes
    client_cert: bytes
    other_client_key: bytes  # signed by another CA, which the server does not trust
    other_client_cert: bytes

    def ssl_config(self, client_verify: bool = True, custom_ca: bool = True, server_key: bytes = b"") -> str:
        """A text-format SSLConfig with the PEM contents, as TF Serving's --ssl_config_file reads it.

        ``server_key`` replaces the server's key (to give one that does not match the certificate).
        """
        fields = [
            f"server_key: {_proto_string(server_key or self.server_key)}",
            f"server_cert: {_proto_string(self.server_cert)}",
        ]
        if custom_ca:
            fields.append(f"custom_ca: {_proto_string(self.ca_cert)}")
        fields.append(f"client_verify: {'true' if client_verify else 'false'}")
        return "\n".join(fields) + "\n"

    def channel_credentials(self, client: str | None = "good") -> grpc.ChannelCredentials:
        """Trusts the test CA; presents the good client's certificate, the other CA's, or none."""
        pair = {
            "good": (self.client_key, self.client_cert),
            "other": (self.other_client_key, self.other_client_cert),
            None: (None, None),
        }[client]
        return grpc.ssl_channel_credentials(self.ca_cert, *pair)


def _proto_string(pem: bytes) -> str:
    """A text-format string literal, one adjacent literal per PEM line (the parser joins them)."""
    return "\n  ".join(f'"{line}\\n"' for line in pem.decode().splitlines())


def make_test_pki() -> StandinPki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, and a foreign client."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(subject_key, subject: str, issuer_key=None, issuer=None, *, ca=False, usage=None, san=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer.subject if issuer is not None else name(subject))
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
        return builder.sign(issuer_key or subject_key, hashes.SHA256())

    def pem_key(private_key) -> bytes:
        return private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key, other_ca_key = key(), key()
    ca = certificate(ca_key, "stand-in test CA", ca=True)
    other_ca = certificate(other_ca_key, "untrusted test CA", ca=True)
    server_key, client_key, other_key = key(), key(), key()
    san = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    server = certificate(server_key, "localhost", ca_key, ca, usage=server_auth, san=san)
    client = certificate(client_key, "test client", ca_key, ca, usage=client_auth)
    other = certificate(other_key, "foreign client", other_ca_key, other_ca, usage=client_auth)
    return StandinPki(
        ca_cert=pem(ca),
        server_key=pem_key(server_key),
        server_cert=pem(server),
        client_key=pem_key(client_key),
        client_cert=pem(client),
        other_client_key=pem_key(other_key),
        other_client_cert=pem(other),
    )


def predict_add(channel: grpc.Channel) -> list[float]:
    """calculator's default signature (add) for 2 + 3 over ``channel``, as a client would call it."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "calculator"
    request.inputs["a"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto([3.0], dtype=tf.float32))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return list(stub.Predict(request, timeout=10).outputs["result"].float_val)


def refused_code(channel: grpc.Channel) -> grpc.StatusCode:
    """The code a Predict gets on a channel the server does not accept (handshake failure)."""
    with pytest.raises(grpc.RpcError) as info:
        predict_add(channel)
    return info.value.code()
