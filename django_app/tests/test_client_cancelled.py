"""A call the server cancels (what a server shutting down does to the calls it holds) is no answer:
the client moves on to the next host instead of failing the user's request."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tfsp_client import ClientConfig, TFServingClient, UpstreamError, UpstreamUnavailable
from tfsp_client.tensors import tensor_values


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Adds a and b, or ends every call with ``status`` (when given)."""

    def __init__(self, status: grpc.StatusCode | None) -> None:
        self.status = status
        self.calls = 0

    def Predict(self, request, context):
        self.calls += 1
        if self.status is not None:
            context.abort(self.status, "server shutting down")
        response = predict_pb2.PredictResponse()
        a, b = (tensor_values(request.inputs[k]) for k in ("a", "b"))
        result = response.outputs["result"]
        result.dtype = types_pb2.DT_FLOAT
        result.float_val.extend(x + y for x, y in zip(a, b, strict=True))
        return response


def _serve(servicer: Servicer) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def two_hosts(request) -> Iterator[tuple[list[str], list[Servicer]]]:
    """The first host ends every call with the parametrized status; the second answers."""
    servicers = [Servicer(request.param), Servicer(None)]
    servers = [_serve(servicer) for servicer in servicers]
    yield [target for _, target in servers], servicers
    for server, _ in servers:
        server.stop(None)


@pytest.mark.parametrize("two_hosts", [grpc.StatusCode.CANCELLED], indirect=True)
def test_a_cancelled_call_goes_to_the_next_host(two_hosts):
    targets, servicers = two_hosts
    # calls_per_host=1: strict round-robin, so the cancelling host comes first every other call.
    client = TFServingClient(ClientConfig(targets=tuple(targets), calls_per_host=1, eject_after_failures=100))
    try:
        answers = [client.predict("add", {"a": [float(i)], "b": [1.0]}) for i in range(6)]
    finally:
        client.close()
    assert [answer.values for answer in answers] == [[float(i + 1)] for i in range(6)]
    assert {answer.host for answer in answers} == {targets[1]}
    assert servicers[0].calls >= 3, "the cancelling host was never tried"


@pytest.mark.parametrize("two_hosts", [grpc.StatusCode.CANCELLED], indirect=True)
def test_cancelled_everywhere_is_unavailable(two_hosts):
    targets, servicers = two_hosts
    client = TFServingClient(ClientConfig(targets=(targets[0],)))
    try:
        with pytest.raises(UpstreamUnavailable, match="CANCELLED"):
            client.predict("add", {"a": [1.0], "b": [2.0]})
    finally:
        client.close()
    assert servicers[0].calls == 1  # gRPC's own retry policy retries UNAVAILABLE only


@pytest.mark.parametrize("two_hosts", [grpc.StatusCode.INTERNAL], indirect=True)
def test_a_server_error_is_an_answer_and_not_retried_elsewhere(two_hosts):
    targets, servicers = two_hosts
    client = TFServingClient(ClientConfig(targets=tuple(targets), calls_per_host=1))
    errors = []
    try:
        for _ in range(2):  # strict round-robin: one call starts on each host
            try:
                client.predict("add", {"a": [1.0], "b": [2.0]})
            except UpstreamError as error:
                errors.append(str(error))
    finally:
        client.close()
    assert len(errors) == 1, errors
    assert "INTERNAL" in errors[0]
    assert servicers[1].calls == 1, "the failed call was re-issued on the other host"
