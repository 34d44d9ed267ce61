"""Version labels on the wire, against in-process servers: gRPC sets model_spec.version_label, REST
uses /labels/<label>:verb, and TF Serving's answer to an unknown label becomes UnknownVersionLabel
(the wording of TF Serving, checked against the stand-in in tests/standin/test_conformance_api.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tfsp_client import ClientConfig, TFServingClient, UnknownVersionLabel, UpstreamRejected
from tfsp_client.tensors import tensor_values

LABELS = {"stable": 1, "canary": 2}


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers with the version a label points at; unknown labels as TF Serving does."""

    def __init__(self) -> None:
        self.specs: list[tuple[str, str | None]] = []

    def _version(self, spec, context) -> int:
        label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
        self.specs.append((spec.signature_name, label))
        if label is None:
            return 3
        if label not in LABELS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
        return LABELS[label]

    def Predict(self, request, context):
        response = predict_pb2.PredictResponse()
        response.model_spec.version.value = self._version(request.model_spec, context)
        a, b = (tensor_values(request.inputs[k]) for k in ("a", "b"))
        result = response.outputs["result"]
        result.dtype = types_pb2.DT_FLOAT
        result.float_val.extend(x + y for x, y in zip(a, b, strict=True))
        return response

    def Classify(self, request, context):
        if request.model_spec.signature_name == "bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Expected classification signature")
        response = classification_pb2.ClassificationResponse()
        response.model_spec.version.value = self._version(request.model_spec, context)
        item = response.result.classifications.add()
        item.classes.add(label="less", score=1.0)
        return response

    def Regress(self, request, context):
        response = regression_pb2.RegressionResponse()
        response.model_spec.version.value = self._version(request.model_spec, context)
        response.result.regressions.add(value=3.0)
        return response


@pytest.fixture
def grpc_server() -> Iterator[tuple[str, Servicer]]:
    servicer = Servicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


@pytest.fixture
def rest_server() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            paths.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            label = self.path.split("/labels/")[1].split(":")[0] if "/labels/" in self.path else None
            if label is not None and label not in LABELS:
                status, body = 400, {"error": f"Unrecognized servable version label: {label}"}
            elif self.path.endswith(":predict"):
                status, body = 200, {"outputs": [7.0]}
            elif self.path.endswith(":classify"):
                status, body = 200, {"results": [[["less", 1.0]]]}
            else:
                status, body = 200, {"results": [3.0]}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", paths
    server.shutdown()
    server.server_close()


def test_grpc_asks_for_the_label_in_the_model_spec(grpc_server):
    target, servicer = grpc_server
    client = TFServingClient(ClientConfig(targets=(target,)))
    try:
        assert client.predict("add", {"a": [3.0], "b": [4.0]}).model_version == 3
        answer = client.predict("add", {"a": [3.0], "b": [4.0]}, version_label="canary")
        assert (answer.values, answer.model_version, answer.version_label) == ([7.0], 2, "canary")
        assert client.classify("classify", [{"a": 1.0, "b": 2.0}], version_label="stable").model_version == 1
        assert client.regress("regress", [{"a": 1.0, "b": 2.0}], version_label="stable").model_version == 1
        assert servicer.specs == [
            ("add", None),
            ("add", "canary"),
            ("classify", "stable"),
            ("regress", "stable"),
        ]
    finally:
        client.close()


def test_grpc_unknown_label_is_unknown_version_label_other_invalid_arguments_are_not(grpc_server):
    target, _ = grpc_server
    client = TFServingClient(ClientConfig(targets=(target,)))
    try:
        with pytest.raises(UnknownVersionLabel) as error:
            client.predict("add", {"a": [1.0], "b": [1.0]}, version_label="nope")
        assert "Unrecognized servable version label: nope" in str(error.value)
        with pytest.raises(UpstreamRejected):
            client.classify("bad", [{"a": 1.0, "b": 1.0}])
        assert not client.host_health()[0].ejected
    finally:
        client.close()


def test_rest_asks_for_the_label_in_the_path(rest_server):
    target, paths = rest_server
    client = TFServingClient(ClientConfig(targets=("unused:8500",), rest_targets=(target,), protocol="rest"))
    try:
        assert client.predict("add", {"a": [3.0], "b": [4.0]}).version_label is None
        assert client.predict("add", {"a": [3.0], "b": [4.0]}, version_label="canary").values == [7.0]
        client.classify("classify", [{"a": 1.0, "b": 2.0}], version_label="stable")
        client.regress("regress", [{"a": 1.0, "b": 2.0}], version_label="stable")
        with pytest.raises(UnknownVersionLabel):
            client.predict("add", {"a": [1.0], "b": [1.0]}, version_label="nope")
        assert paths == [
            "/v1/models/calculator:predict",
            "/v1/models/calculator/labels/canary:predict",
            "/v1/models/calculator/labels/stable:classify",
            "/v1/models/calculator/labels/stable:regress",
            "/v1/models/calculator/labels/nope:predict",
        ]
    finally:
        client.close()
