"""Conformance of the stand-in image's gRPC and REST APIs against TF Serving's documented behaviour.

One container serves the calculator (versions 1 and 2, labels stable=1 and
canary=2) from a text-format model config, with Prometheus metrics enabled.
Expected bodies and status codes come from TF Serving's g3doc/api_rest.md and
model_servers/*.cc, not from any client of ours.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from standin_support import add_version, make_model_base, rest_json
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

pytestmark = pytest.mark.docker

CONFIG = """
model_config_list {
  config {
    name: "calculator"
    base_path: "/models/calculator"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, calculator_version, container_factory):
    base = make_model_base(tmp_path_factory, "api-models")
    model_dir = base / "calculator"
    model_dir.mkdir()
    add_version(model_dir, calculator_version, 1)
    add_version(model_dir, calculator_version, 2)
    (base / "models.config").write_text(CONFIG)
    (base / "monitoring.config").write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
    )
    return container_factory(
        base,
        "--model_config_file=/models/models.config",
        "--monitoring_config_file=/models/monitoring.config",
        # Labels in the first config point at versions that are still loading.
        "--allow_version_labels_for_unavailable_models=true",
        env={"MODEL_NAME": "calculator"},
        label="api",
    )


@pytest.fixture(scope="module")
def predict_stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(server.channel)


@pytest.fixture(scope="module")
def model_stub(server):
    return model_service_pb2_grpc.ModelServiceStub(server.channel)


def predict_request(a, b, signature="", version=None, label=None, name="calculator", dtype=tf.float32):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(a, dtype=dtype))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(b, dtype=dtype))
    return request


def examples_input(request, pairs):
    for a, b in pairs:
        example = request.input.example_list.examples.add()
        example.features.feature["a"].float_list.value.append(a)
        example.features.feature["b"].float_list.value.append(b)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


# -- gRPC PredictionService ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "expected"),
    [("", [5.0, 1.5]), ("add", [5.0, 1.5]), ("subtract", [-3.0, 5.5]), ("multiply", [4.0, -7.0])],
)
def test_grpc_predict_signatures(predict_stub, signature, expected):
    response = predict_stub.Predict(predict_request([1.0, 3.5], [4.0, -2.0], signature), timeout=10)
    # TF Serving writes outputs as typed fields (Tensor::AsProtoField): readable without TensorFlow.
    assert list(response.outputs["result"].float_val) == expected
    assert tf.make_ndarray(response.outputs["result"]).tolist() == expected
    assert response.model_spec.name == "calculator"
    assert response.model_spec.version.value == 2  # latest
    assert response.model_spec.signature_name == (signature or "serving_default")


def test_grpc_predict_version_and_label(predict_stub):
    assert (
        predict_stub.Predict(predict_request([1.0], [1.0], version=1), timeout=10).model_spec.version.value
        == 1
    )
    assert (
        predict_stub.Predict(
            predict_request([1.0], [1.0], label="stable"), timeout=10
        ).model_spec.version.value
        == 1
    )
    assert (
        predict_stub.Predict(
            predict_request([1.0], [1.0], label="canary"), timeout=10
        ).model_spec.version.value
        == 2
    )


def test_grpc_predict_output_filter(predict_stub):
    request = predict_request([2.0], [3.0], "multiply")
    request.output_filter.append("result")
    assert list(predict_stub.Predict(request, timeout=10).outputs["result"].float_val) == [6.0]
    request.output_filter[:] = ["nope"]
    assert rpc_error(predict_stub.Predict, request).code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (
            {"version": 7},
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(calculator, 7)",
        ),
        ({"label": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope"),
        (
            {"signature": "nope"},
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        ({"dtype": tf.float64}, grpc.StatusCode.INVALID_ARGUMENT, "to be float but double is provided"),
    ],
)
def test_grpc_predict_errors(predict_stub, change, code, message):
    error = rpc_error(predict_stub.Predict, predict_request([1.0], [2.0], **change))
    assert error.code() == code
    assert message in error.details()


def test_grpc_predict_missing_input(predict_stub):
    request = predict_request([1.0], [2.0])
    del request.inputs["b"]
    error = rpc_error(predict_stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input size does not match signature: 1!=2" in error.details()
    assert "Missing but required: {b}" in error.details()


def test_grpc_classify(predict_stub):
    request = examples_input(classification_pb2.ClassificationRequest(), [(1.0, 2.0), (2.0, 2.0), (5.0, 1.0)])
    request.model_spec.name = "calculator"
    request.model_spec.signature_name = "classify"
    response = predict_stub.Classify(request, timeout=10)
    best = [max(c.classes, key=lambda cls: cls.score).label for c in response.result.classifications]
    assert best == ["less", "equal", "greater"]
    assert response.model_spec.signature_name == "classify"


def test_grpc_regress(predict_stub):
    request = examples_input(regression_pb2.RegressionRequest(), [(1.0, 2.0), (-4.0, 1.5)])
    request.model_spec.name = "calculator"
    request.model_spec.signature_name = "regress"
    response = predict_stub.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == [3.0, -2.5]


def test_grpc_classify_regress_errors(predict_stub):
    request = examples_input(classification_pb2.ClassificationRequest(), [(1.0, 2.0)])
    request.model_spec.name = "calculator"  # serving_default is a predict signature
    error = rpc_error(predict_stub.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "Expected classification signature method_name to be tensorflow/serving/classify" in error.details()
    )
    empty = regression_pb2.RegressionRequest()
    empty.model_spec.name = "calculator"
    empty.model_spec.signature_name = "regress"
    error = rpc_error(predict_stub.Regress, empty)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input is empty" in error.details()
    request.model_spec.signature_name = "nope"
    assert "No signature was found with the name: nope" in rpc_error(predict_stub.Classify, request).details()


def test_grpc_multi_inference(predict_stub):
    request = examples_input(inference_pb2.MultiInferenceRequest(), [(3.0, 4.0)])
    for signature, method in (
        ("classify", "tensorflow/serving/classify"),
        ("regress", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "calculator"
        task.model_spec.signature_name = signature
    results = predict_stub.MultiInference(request, timeout=10).results
    assert results[1].regression_result.regressions[0].value == 7.0
    assert len(results[0].classification_result.classifications[0].classes) == 3


def test_grpc_get_model_metadata(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "calculator"
    response = predict_stub.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    defs = signatures.signature_def
    assert {"serving_default", "add", "subtract", "multiply", "classify", "regress"} <= set(defs)
    assert defs["classify"].method_name == "tensorflow/serving/classify"
    assert defs["regress"].method_name == "tensorflow/serving/regress"
    assert set(defs["add"].inputs) == {"a", "b"}
    assert set(defs["add"].outputs) == {"result"}
    assert response.model_spec.version.value == 2
    request.metadata_field[:] = ["nope"]
    error = rpc_error(predict_stub.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- gRPC ModelService ------------------------------------------------------------------------


def test_grpc_get_model_status(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "calculator"
    response = model_stub.GetModelStatus(request, timeout=10)
    states = [
        (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
        for s in response.model_version_status
    ]
    assert states == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    request.model_spec.version.value = 9
    error = rpc_error(model_stub.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Could not find version 9 of model calculator"
    request.model_spec.name = "nope"
    request.model_spec.ClearField("version")
    assert (
        rpc_error(model_stub.GetModelStatus, request).details() == "Could not find any versions of model nope"
    )


# -- REST: the examples of g3doc/api_rest.md, on the calculator ------------------------------


def test_rest_model_status_document(server):
    response = requests.get(f"{server.rest_url}/v1/models/calculator/versions/1", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert rest_json(response) == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    versions = [
        s["version"]
        for s in rest_json(requests.get(f"{server.rest_url}/v1/models/calculator", timeout=10))[
            "model_version_status"
        ]
    ]
    assert versions == ["2", "1"]
    labelled = rest_json(requests.get(f"{server.rest_url}/v1/models/calculator/labels/stable", timeout=10))
    assert [s["version"] for s in labelled["model_version_status"]] == ["1"]


def test_rest_predict_row_format(server):
    body = {"instances": [{"a": 1.0, "b": 2.0}, {"a": 3, "b": 4}]}
    response = requests.post(f"{server.rest_url}/v1/models/calculator:predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert rest_json(response) == {"predictions": [3.0, 7.0]}


def test_rest_predict_columnar_format_named_signature(server):
    body = {"signature_name": "multiply", "inputs": {"a": [1.5, 2.0, 3.0], "b": [2.0, 2.0, -1.0]}}
    response = requests.post(f"{server.rest_url}/v1/models/calculator:predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert rest_json(response) == {"outputs": [3.0, 4.0, -3.0]}


@pytest.mark.parametrize("path", ["/versions/1", "/versions/2", "/labels/stable", "/labels/canary"])
def test_rest_predict_version_and_label_paths(server, path):
    body = {"signature_name": "subtract", "instances": [{"a": 10.0, "b": 4.0}]}
    response = requests.post(f"{server.rest_url}/v1/models/calculator{path}:predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert rest_json(response) == {"predictions": [6.0]}


def test_rest_nan_and_infinity_tokens(server):
    body = '{"inputs": {"a": [NaN, Infinity, 1.0], "b": [1.0, 1.0, -Infinity]}}'
    response = requests.post(f"{server.rest_url}/v1/models/calculator:predict", data=body, timeout=10)
    assert response.status_code == 200, response.text
    outputs = rest_json(response)["outputs"]
    assert math.isnan(outputs[0])
    assert outputs[1] == math.inf
    assert outputs[2] == -math.inf


def test_rest_classify_and_regress(server):
    body = {"signature_name": "regress", "examples": [{"a": 1.0, "b": 2.0}, {"a": 2.5, "b": 2.5}]}
    response = requests.post(f"{server.rest_url}/v1/models/calculator:regress", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert rest_json(response) == {"results": [3.0, 5.0]}
    body = {"signature_name": "classify", "context": {"b": 2.0}, "examples": [{"a": 1.0}, {"a": 3.0}]}
    response = requests.post(
        f"{server.rest_url}/v1/models/calculator/labels/stable:classify", json=body, timeout=10
    )
    assert response.status_code == 200, response.text
    results = rest_json(response)["results"]
    assert [max(r, key=lambda pair: pair[1])[0] for r in results] == ["less", "greater"]
    assert all(isinstance(label, str) and isinstance(score, float) for r in results for label, score in r)


def test_rest_metadata(server):
    response = requests.get(f"{server.rest_url}/v1/models/calculator/versions/1/metadata", timeout=10)
    assert response.status_code == 200, response.text
    doc = rest_json(response)
    assert doc["model_spec"] == {"name": "calculator", "signature_name": "", "version": "1"}
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    assert signatures["regress"]["method_name"] == "tensorflow/serving/regress"
    assert signatures["add"]["inputs"]["a"]["dtype"] == "DT_FLOAT"


CALC = "/v1/models/calculator"
ONE = '{"instances": [{"a": 1, "b": 1}]}'


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        # The error example of api_rest.md, word for word.
        ("POST", "/v1/models/half:predict", '{"instances": [1.0,5.0]}', 404,
         "Servable not found for request: Latest(half)"),
        ("POST", f"{CALC}/versions/9:predict", ONE, 404,
         "Servable not found for request: Specific(calculator, 9)"),
        ("POST", f"{CALC}/labels/nope:predict", ONE, 400, "Unrecognized servable version label: nope"),
        ("POST", f"{CALC}:predict", '{"signature_name": "nope", "instances": [{"a": 1, "b": 1}]}', 400,
         'Serving signature name: "nope" not found in signature def'),
        ("POST", f"{CALC}:predict", '{"instances": [{"a": 1, "b": 1}], "inputs": {"a": [1]}}', 400,
         "expecting only one of 'inputs' or 'instances'"),
        ("POST", "/v1/models/calculator:predict", '{"instances": [{"a": "x", "b": 1}]}', 400,
         "is not of expected type: float"),
        ("POST", "/v1/models/calculator:predict", '{"instances": [{"a": 1, "b"', 400, "JSON Parse error"),
        ("POST", "/v1/models/calculator:predict", '{"signature_name": 5, "instances": [1]}', 400,
         "'signature_name' key must be a string value."),
        ("POST", "/v1/models/calculator:classify", '{"examples": [{"a": 1.0, "b": 2.0}]}', 400,
         "Expected classification signature method_name to be tensorflow/serving/classify"),
        ("POST", f"{CALC}:regress", '{"signature_name": "regress", "examples": [{"a": 1, "b": 2}]}', 400,
         "int64 but expected type: float"),
        ("GET", f"{CALC}/versions/9", None, 404, "Could not find version 9 of model calculator"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", f"{CALC}:predict", None, 400, "Malformed request: GET /v1/models/calculator:predict"),
        ("PUT", "/v1/models/calculator", "{}", 400, "Malformed request: PUT /v1/models/calculator"),
    ],
)  # fmt: skip
def test_rest_errors(server, method, path, body, status, message):
    response = requests.request(method, server.rest_url + path, data=body, timeout=10)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert message in rest_json(response)["error"]


def test_rest_unknown_path_is_not_found(server):
    assert requests.get(f"{server.rest_url}/healthz", timeout=10).status_code == 404


def test_prometheus_metrics(server, predict_stub):
    predict_stub.Predict(predict_request([1.0], [1.0]), timeout=10)
    response = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in response.text
    assert ':tensorflow:serving:request_count{model_name="calculator",status="OK"}' in response.text
    assert (
        ':tensorflow:serving:request_latency_bucket{model_name="calculator",API="predict",entrypoint="GRPC"'
        in response.text
    )


def test_warmup_records_replayed_on_load(server):
    logs = server.logs()
    for version in (1, 2):
        assert f"/models/calculator/{version}. Number of warmup records read: 6." in logs


def test_predict_batch_keeps_float_val_order(predict_stub):
    # Bigger batch: the response still uses float_val, in order.
    values = np.arange(100, dtype=np.float32)
    response = predict_stub.Predict(predict_request(values, values, "add"), timeout=10)
    assert list(response.outputs["result"].float_val) == (values * 2).tolist()
