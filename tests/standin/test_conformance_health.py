"""Conformance of the stand-in's gRPC health service (``--enable_grpc_healthcheck_service``).

As in TF Serving: off by default (the method is UNIMPLEMENTED); when on, the standard
``grpc.health.v1.Health`` service reports the server (service name "") SERVING, knows no other
name, and never changes: TF Serving dies on SIGTERM rather than shutting its server down, so a
watcher's stream breaks (UNAVAILABLE) without a NOT_SERVING first. The calls are made with raw bytes (the
wire encoding of ``grpc/health/v1/health.proto``), independent of the stand-in's own code.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from standin_support import calculator_model_base, docker

pytestmark = pytest.mark.docker

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
NOT_SERVING = b"\x08\x02"
SERVICE_UNKNOWN = b"\x08\x03"


def request(service: str = "") -> bytes:
    """HealthCheckRequest{service}: field 1, length-delimited (empty message for "")."""
    data = service.encode()
    return b"\x0a" + bytes([len(data)]) + data if data else b""


def raw(channel: grpc.Channel, method: str, streaming: bool = False):
    make = channel.unary_stream if streaming else channel.unary_unary
    return make(method, request_serializer=None, response_deserializer=None)


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, calculator_version):
    return calculator_model_base(tmp_path_factory, "health-models", calculator_version)


@pytest.fixture(scope="module")
def with_health(model_base, container_factory):
    # With an init, as the tf_serving role runs it: SIGTERM then reaches the server (the last test).
    return container_factory(
        model_base,
        "--enable_grpc_healthcheck_service=true",
        env={"MODEL_NAME": "calculator"},
        label="health",
        docker_args=["--init"],
    )


def test_health_service_is_off_by_default(model_base, container_factory):
    server = container_factory(model_base, env={"MODEL_NAME": "calculator"}, label="nohealth")
    with pytest.raises(grpc.RpcError) as error:
        raw(server.channel, CHECK)(request(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_server_is_serving(with_health):
    assert raw(with_health.channel, CHECK)(request(), timeout=5) == SERVING


def test_other_service_names_are_unknown(with_health):
    for name in ("tensorflow.serving.PredictionService", "calculator"):
        with pytest.raises(grpc.RpcError) as error:
            raw(with_health.channel, CHECK)(request(name), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    stream = raw(with_health.channel, WATCH, streaming=True)(request("calculator"), timeout=5)
    assert next(stream) == SERVICE_UNKNOWN
    stream.cancel()


def test_grpc_client_side_health_checking_sees_the_server_healthy(with_health):
    """A channel with ``healthCheckConfig`` (gRPC's own client-side health checking) gets READY."""
    config = {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
    channel = grpc.insecure_channel(
        with_health.grpc_target, options=[("grpc.service_config", json.dumps(config))]
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        assert raw(channel, CHECK)(request(), timeout=5) == SERVING
    finally:
        channel.close()


def test_sigterm_breaks_the_watch_without_a_not_serving(with_health):
    """Last: SIGTERM ends the server at once. A watcher hears nothing more; its stream breaks."""
    stream = raw(with_health.channel, WATCH, streaming=True)(request(), timeout=30)
    assert next(stream) == SERVING
    started = time.monotonic()
    docker("kill", "--signal", "TERM", with_health.name)
    with pytest.raises(grpc.RpcError) as error:
        next(stream)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    # The init's status: the process it ran was killed by SIGTERM (128 + 15).
    assert docker("wait", with_health.name, timeout=30).stdout.strip() == "143"
    assert time.monotonic() - started < 5
