"""Conformance of the stand-in image's ``--ssl_config_file`` (TLS on the gRPC port).

As in TF Serving (model_servers/server.cc, BuildServerCredentialsFromSSLConfigFile): the file is
a text-format SSLConfig holding PEM contents; the gRPC port then speaks TLS only, for every service
on it (health included); with ``client_verify`` a client needs a certificate that verifies against
``custom_ca`` (without ``custom_ca``, none does); the REST port stays plain HTTP. A file that cannot
be read or parsed aborts the server after the models loaded (TF_CHECK_OK: a fatal ``Non-OK-status``
line, SIGABRT, 134 for the container); credentials gRPC cannot use stop the start with "Failed to
BuildAndStart gRPC server", exit status 255. The certificates are made for the session
(standin_support.make_test_pki) and written only into the temporary model base.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
import requests
from standin_support import IMAGE, calculator_model_base, docker, predict_add, refused_code

pytestmark = pytest.mark.docker

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}
CHECK_FAILED = "Non-OK-status: ParseProtoTextFile<SSLConfig>(ssl_config_file, &ssl_config)"
START_FAILED = "Failed to start server. Error: INVALID_ARGUMENT: Failed to BuildAndStart gRPC server"
#: The channel checks the server certificate for this name (the test certificate carries it).
NAME = [("grpc.ssl_target_name_override", "localhost")]


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, calculator_version, pki):
    base = calculator_model_base(tmp_path_factory, "tls-models", calculator_version)
    (base / "mtls.config").write_text(pki.ssl_config(client_verify=True))
    (base / "tls.config").write_text(pki.ssl_config(client_verify=False))
    (base / "noca.config").write_text(pki.ssl_config(client_verify=True, custom_ca=False))
    (base / "broken.config").write_text("server_key: 'a' server_key_file: 'b'\n")
    (base / "empty-pair.config").write_text("client_verify: false\n")
    (base / "mismatch.config").write_text(
        pki.ssl_config(client_verify=False, server_key=pki.other_client_key)
    )
    for path in base.glob("*.config"):
        path.chmod(0o644)
    return base


@pytest.fixture(scope="module")
def mutual_tls(model_base, container_factory, pki):
    return container_factory(
        model_base,
        "--ssl_config_file=/models/mtls.config",
        "--enable_grpc_healthcheck_service=true",
        env={"MODEL_NAME": "calculator"},
        label="mtls",
        credentials=pki.channel_credentials("good"),
    )


@pytest.fixture(scope="module")
def server_tls(model_base, container_factory, pki):
    return container_factory(
        model_base,
        "--ssl_config_file=/models/tls.config",
        env={"MODEL_NAME": "calculator"},
        label="tls",
        credentials=pki.channel_credentials(None),
    )


def tls_channel(container, credentials: grpc.ChannelCredentials) -> grpc.Channel:
    return grpc.secure_channel(container.grpc_target, credentials, options=NAME)


# -- client_verify: true ---------------------------------------------------------------------


def test_client_with_certificate_from_custom_ca_gets_predict(mutual_tls, pki):
    with tls_channel(mutual_tls, pki.channel_credentials("good")) as channel:
        assert predict_add(channel) == [5.0]


@pytest.mark.parametrize("client", [None, "other"], ids=["no-client-certificate", "foreign-ca"])
def test_client_verify_refuses_clients_without_a_trusted_certificate(mutual_tls, pki, client):
    with tls_channel(mutual_tls, pki.channel_credentials(client)) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_is_refused(mutual_tls):
    with grpc.insecure_channel(mutual_tls.grpc_target) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_health_service_is_behind_the_same_tls(mutual_tls, pki):
    with tls_channel(mutual_tls, pki.channel_credentials("good")) as channel:
        assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=10) == SERVING
    with grpc.insecure_channel(mutual_tls.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(HEALTH_CHECK)(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_rest_port_stays_plain_http(mutual_tls):
    url = mutual_tls.rest_url + "/v1/models/calculator"
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.json()["model_version_status"][0]["state"] == "AVAILABLE"
    answer = requests.post(f"{url}:predict", json={"instances": [{"a": 1.0, "b": 2.0}]}, timeout=10)
    assert answer.json() == {"predictions": [3.0]}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url.replace("http://", "https://"), timeout=10, verify=False)  # noqa: S501 - no TLS there


# -- client_verify: false, or no custom_ca ---------------------------------------------------------


def test_server_side_tls_serves_any_client_that_trusts_the_server(server_tls, pki):
    for client in (None, "other"):  # a client certificate is not requested, so not checked
        with tls_channel(server_tls, pki.channel_credentials(client)) as channel:
            assert predict_add(channel) == [5.0]
    with tls_channel(server_tls, grpc.ssl_channel_credentials()) as channel:  # system roots only
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(server_tls.grpc_target) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_client_verify_without_custom_ca_refuses_every_client(model_base, container_factory, pki):
    server = container_factory(
        model_base,
        "--ssl_config_file=/models/noca.config",
        env={"MODEL_NAME": "calculator"},
        label="tls-noca",
        ready_via_rest=True,
    )
    for client in ("good", None):
        with tls_channel(server, pki.channel_credentials(client)) as channel:
            assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


# -- start-up failures -----------------------------------------------------------------------


def run_to_exit(model_base, *args: str):
    name = f"standin-test-tls-fail-{uuid.uuid4().hex[:8]}"
    return docker(
        "run", "--rm", "--name", name, "-v", f"{model_base}:/models", "-e", "MODEL_NAME=calculator",
        IMAGE, *args, check=False, timeout=180,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("config", "status"),
    [
        ("missing.config", "NOT_FOUND: /models/missing.config; No such file or directory"),
        ("broken.config", "INVALID_ARGUMENT: Invalid protobuf file: '/models/broken.config'"),
    ],
    ids=["missing", "unparseable"],
)
def test_unreadable_or_invalid_file_aborts_after_models_load(standin_image, model_base, config, status):
    result = run_to_exit(model_base, f"--ssl_config_file=/models/{config}")
    output = result.stdout + result.stderr
    assert result.returncode == 134, output  # SIGABRT, as the official image's shell reports it
    assert f"{CHECK_FAILED}\nStatus: {status}" in output
    loaded = output.index("Successfully loaded servable version {name: calculator version: 1}")
    assert loaded < output.index(CHECK_FAILED)  # the file is read when the gRPC port is added
    assert "Running gRPC ModelServer" not in output


@pytest.mark.parametrize("config", ["empty-pair.config", "mismatch.config"])
def test_credentials_grpc_cannot_use_stop_the_start(standin_image, model_base, config):
    result = run_to_exit(model_base, f"--ssl_config_file=/models/{config}")
    output = result.stdout + result.stderr  # TF Serving prints this line on stdout
    assert result.returncode == 255, output
    assert START_FAILED in output
