"""The stand-in's health service under streams that close early (an in-process server, no container)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from tf_serving_standin import health
from tf_serving_standin.health import SERVING, HealthCheckRequest, HealthCheckResponse, HealthService

WATCH = "/grpc.health.v1.Health/Watch"
CHECK = "/grpc.health.v1.Health/Check"
HEALTH_CHECKED = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)

# Run in a child process: a frozen gRPC server keeps threads that never end, which would hang
# the test session at exit rather than fail one test.
CHANNELS_THAT_CLOSE_AT_ONCE = textwrap.dedent(
    f"""
    import json, os, sys, threading
    from concurrent import futures
    import grpc
    from tf_serving_standin.health import HealthCheckRequest, HealthCheckResponse, HealthService

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service = HealthService()
    service.register(server)
    target = f"127.0.0.1:{{server.add_insecure_port('127.0.0.1:0')}}"
    server.start()
    for round in range(3000):
        # gRPC's client-side health checking opens a Watch as the channel connects; the channel
        # closes right after one call, often while the Watch's first answer is on its way.
        with grpc.insecure_channel(target, options=[("grpc.service_config", {HEALTH_CHECKED!r})]) as channel:
            check = channel.unary_unary(
                "{CHECK}",
                request_serializer=HealthCheckRequest.SerializeToString,
                response_deserializer=HealthCheckResponse.FromString,
            )
            try:
                check(HealthCheckRequest(service=""), timeout=5)
            except grpc.RpcError as error:
                print(f"round {{round}}: Check failed: {{error.code()}}", flush=True)
                os._exit(1)
    if not server.stop(0).wait(5):
        print("the server did not stop", flush=True)
        os._exit(1)
    print("ok", flush=True)
    os._exit(0)
    """
)


def test_watch_streams_closed_at_once_never_freeze_the_server():
    """A Watch whose stream closes while its first answer is being sent leaves the server serving.

    (The first answer was sent under the service's lock, which the stream's close callback takes
    on gRPC's serving thread: the whole server froze, later calls timed out.)
    """
    source = Path(health.__file__).resolve().parents[1]  # the folder holding tf_serving_standin
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHANNELS_THAT_CLOSE_AT_ONCE],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the server froze: {expired.stdout!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"


@pytest.fixture
def server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service = HealthService()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, f"127.0.0.1:{port}"
    server.stop(0)


def test_a_watcher_gets_one_answer_and_the_stream_stays_open(server):
    """No status ever changes (TF Serving never shuts its server down): one answer, then nothing."""
    _service, target = server
    with grpc.insecure_channel(target) as channel:
        watch = channel.unary_stream(
            WATCH,
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        stream = watch(HealthCheckRequest(service=""), timeout=2)
        assert next(stream).status == SERVING
        with pytest.raises(grpc.RpcError) as error:
            next(stream)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        unknown = watch(HealthCheckRequest(service="calculator"), timeout=5)
        assert next(unknown).status == health.SERVICE_UNKNOWN
        unknown.cancel()
