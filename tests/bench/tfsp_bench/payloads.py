"""The one request every benchmark path sends: add 3 and 4, in each path's own encoding.

The direct calls carry what the web tier's client sends to TF Serving for the same question
(django_app/tfsp_client): one float32 tensor of shape [1] per input, signature "add".
"""

from __future__ import annotations

import json
import struct

A, B, EXPECTED = 3.0, 4.0, 7.0
MODEL = "calculator"
SIGNATURE = "add"
OUTPUT = "result"
GRPC_PATH = "/tensorflow.serving.PredictionService/Predict"


def grpc_predict_body(model: str = MODEL) -> bytes:
    """A PredictRequest in gRPC's length-prefixed framing (flag byte 0: not compressed)."""
    from tensorflow_serving.apis import predict_pb2  # the controller's venv has the official API

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    for name, value in (("a", A), ("b", B)):
        tensor = request.inputs[name]
        tensor.dtype = 1  # DT_FLOAT
        tensor.tensor_shape.dim.add(size=1)
        tensor.tensor_content = struct.pack("<f", value)
    message = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_predict_answer(framed: bytes) -> tuple[float, int]:
    """(result, model version) of a framed PredictResponse; ValueError if it is not one."""
    from tensorflow_serving.apis import predict_pb2

    if len(framed) < 5 or framed[0] != 0:
        raise ValueError(f"not an uncompressed gRPC message: {framed[:16]!r}")
    (length,) = struct.unpack(">I", framed[1:5])
    if len(framed) != 5 + length:
        raise ValueError(f"gRPC frame announces {length} bytes, carries {len(framed) - 5}")
    response = predict_pb2.PredictResponse.FromString(framed[5:])
    tensor = response.outputs[OUTPUT]
    if tensor.tensor_content:
        (value,) = struct.unpack("<f", tensor.tensor_content)
    else:
        (value,) = tensor.float_val
    return value, response.model_spec.version.value


def rest_predict_body() -> bytes:
    """TF Serving's REST predict request in the columnar format the web tier's REST client uses."""
    return json.dumps({"signature_name": SIGNATURE, "inputs": {"a": [A], "b": [B]}}).encode()


def rest_predict_answer(body: bytes) -> float:
    """The result of a REST predict answer ({"outputs": [7.0]} for one named output)."""
    data = json.loads(body)
    outputs = data["outputs"]
    if isinstance(outputs, dict):
        outputs = outputs[OUTPUT]
    (value,) = outputs
    return float(value)


def django_api_body() -> bytes:
    """The web tier's JSON API request."""
    return json.dumps({"operation": "add", "a": A, "b": B}).encode()


def django_api_answer(body: bytes) -> float:
    """The result of the web tier's JSON API answer."""
    return float(json.loads(body)["result"])
