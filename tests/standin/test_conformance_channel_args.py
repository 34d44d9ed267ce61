"""Conformance of ``--grpc_channel_arguments``: gRPC server arguments from the command line.

As server.cc: "key=value,key=value", each added to the ServerBuilder after the server's own (so
they win), an integer value as an integer. Two arguments show that they reach the server: the
message size limit (a request over it is refused RESOURCE_EXHAUSTED) and the ping policy, which the
tf_serving role sets so that its clients' keepalive pings are welcome (without it, gRPC's server
answers pings on an idle connection more often than every 5 minutes with GOAWAY "too_many_pings").
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from standin_support import calculator_model_base
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

pytestmark = pytest.mark.docker

# A client that pings an idle connection every 200 ms without limit: gRPC's default server
# policy counts each such ping as a strike and closes the connection after the third.
EAGER_PINGS = [
    ("grpc.keepalive_time_ms", 200),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
WELCOME_PINGS = "grpc.keepalive_permit_without_calls=1,grpc.http2.min_ping_interval_without_data_ms=100"


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, calculator_version):
    return calculator_model_base(tmp_path_factory, "channel-args-models", calculator_version)


def model_status(channel: grpc.Channel, name: str) -> None:
    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": name})
    model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)


def test_message_size_limit_reaches_the_server(model_base, container_factory):
    server = container_factory(
        model_base,
        "--grpc_channel_arguments=grpc.max_receive_message_length=64",
        env={"MODEL_NAME": "calculator"},
        label="msgsize",
    )
    model_status(server.channel, "calculator")  # a short request passes
    with pytest.raises(grpc.RpcError) as error:
        model_status(server.channel, "x" * 200)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_large_requests_pass_by_default(model_base, container_factory):
    server = container_factory(model_base, env={"MODEL_NAME": "calculator"}, label="nolimit")
    with pytest.raises(grpc.RpcError) as error:
        model_status(server.channel, "x" * 200)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def states_while_idle(target: str, seconds: float) -> list[grpc.ChannelConnectivity]:
    """The states an eagerly pinging channel goes through while idle for ``seconds`` after a call."""
    seen: list[grpc.ChannelConnectivity] = []
    lock = threading.Lock()

    def record(state: grpc.ChannelConnectivity) -> None:
        with lock:
            seen.append(state)

    with grpc.insecure_channel(target, options=EAGER_PINGS) as channel:
        model_status(channel, "calculator")
        channel.subscribe(record)
        time.sleep(seconds)
        channel.unsubscribe(record)
    with lock:
        return seen


def test_idle_pings_are_refused_by_default(model_base, container_factory):
    server = container_factory(model_base, env={"MODEL_NAME": "calculator"}, label="pingdefault")
    seen = states_while_idle(server.grpc_target, 4)
    assert seen[0] == grpc.ChannelConnectivity.READY
    assert grpc.ChannelConnectivity.IDLE in seen  # the server closed the connection (GOAWAY)


def test_idle_pings_are_welcome_with_the_ping_policy(model_base, container_factory):
    server = container_factory(
        model_base,
        f"--grpc_channel_arguments={WELCOME_PINGS}",
        env={"MODEL_NAME": "calculator"},
        label="pingwelcome",
    )
    seen = states_while_idle(server.grpc_target, 4)
    assert seen == [grpc.ChannelConnectivity.READY]


def test_malformed_entry_fails_at_start(model_base, standin_image):
    from standin_support import IMAGE, docker

    result = docker(
        "run", "--rm", "--name", "standin-test-badchanarg", "-v", f"{model_base}:/models",
        "-e", "MODEL_NAME=calculator", IMAGE, "--grpc_channel_arguments=grpc.max_connection_age_ms",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--grpc_channel_arguments entry 'grpc.max_connection_age_ms' is not key=value" in result.stderr
