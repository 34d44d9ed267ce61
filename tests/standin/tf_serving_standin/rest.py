"""The HTTP/REST API: TF Serving's /v1/ paths, JSON mapping and error codes.

Paths, regular expressions and messages follow TF Serving's
model_servers/http_rest_api_handler.cc and http_rest_api_util.cc; the JSON
tensor mapping (row "instances"/"predictions", columnar "inputs"/"outputs",
{"b64": ...}, NaN/Infinity tokens, tf.Example features for classify/regress)
follows util/json_tensor.cc as documented in g3doc/api_rest.md.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tf_serving_standin import metrics
from tf_serving_standin.api import ServingApi
from tf_serving_standin.errors import ServingError, from_exception, invalid_argument
from tf_serving_standin.servable import DEFAULT_SIGNATURE
from tf_serving_standin.tensors import dtype_name, numpy_dtype

log = logging.getLogger(__name__)

_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_FLOATS = {types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16}
_INTS = {
    types_pb2.DT_INT8,
    types_pb2.DT_UINT8,
    types_pb2.DT_INT16,
    types_pb2.DT_UINT16,
    types_pb2.DT_INT32,
    types_pb2.DT_UINT32,
    types_pb2.DT_INT64,
    types_pb2.DT_UINT64,
}


# -- JSON -> tensors ----------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    return "Null"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _b64decode(value: dict) -> bytes:
    encoded = value["b64"]
    if not isinstance(encoded, str):
        raise invalid_argument(f"JSON Value: {json.dumps(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise invalid_argument(f"Unable to base64 decode: {encoded}") from exc


def _leaf(value: Any, dtype_enum: int) -> Any:
    def mismatch() -> ServingError:
        shown = json.dumps(value)
        return invalid_argument(
            f"JSON Value: {shown} Type: {_json_type(value)} is not of expected type: {dtype_name(dtype_enum)}"
        )

    if dtype_enum in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise mismatch()
        return float(value)
    if dtype_enum in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise mismatch()
        return value
    if dtype_enum == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise mismatch()
        return value
    if dtype_enum == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value):
            return _b64decode(value)
        raise mismatch()
    raise invalid_argument(f"Unsupported tensor type for JSON: {dtype_name(dtype_enum)}")


def _shape_and_values(value: Any, dtype_enum: int) -> tuple[tuple[int, ...], list]:
    if isinstance(value, list):
        if not value:
            return (0,), []
        parts = [_shape_and_values(item, dtype_enum) for item in value]
        inner = parts[0][0]
        for shape, _ in parts[1:]:
            if shape != inner:
                raise invalid_argument(
                    f"Expecting tensor size: {int(np.prod(inner))} but got: {int(np.prod(shape))} "
                    "(all elements of a list must have the same shape)"
                )
        return (len(value), *inner), [v for _, values in parts for v in values]
    return (), [_leaf(value, dtype_enum)]


def json_to_ndarray(value: Any, dtype_enum: int) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of the signature input's dtype."""
    shape, values = _shape_and_values(value, dtype_enum)
    dtype = numpy_dtype(dtype_enum)
    if dtype.kind == "O":
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        try:
            array = np.array(values, dtype=dtype)
        except OverflowError as exc:
            raise invalid_argument(f"Value out of range for {dtype_name(dtype_enum)}: {exc}") from exc
    return array.reshape(shape)


def _parse_body(body: bytes) -> dict:
    try:
        doc = json.loads(body.decode("utf-8") if body else "")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid_argument(f"JSON Parse error: {exc}") from exc
    if not isinstance(doc, dict):
        raise invalid_argument("JSON Parse error: the request body must be a JSON object")
    return doc


def _signature_name(doc: dict) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument("'signature_name' key must be a string value.")
    return name


def fill_predict_request(doc: dict, input_infos: dict[str, int], request: predict_pb2.PredictRequest) -> str:
    """Fill request.inputs from a JSON body; return the format ("row" or "columnar")."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
        )
    if not has_instances and not has_inputs:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    arrays: dict[str, np.ndarray] = {}
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument("No values in 'instances' list")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if named:
            for i, item in enumerate(instances):
                if not isinstance(item, dict) or _is_b64(item):
                    raise invalid_argument(
                        f"Expecting object but got {_json_type(item)} at item {i} of input list"
                    )
                if set(item) != set(instances[0]):
                    missing = sorted(set(instances[0]) ^ set(item))[0]
                    raise invalid_argument(
                        f"Failed to process element: {i} key: {missing} of 'instances' list. Error: "
                        f"Invalid argument: JSON object: does not have named input: {missing}"
                    )
            for key in instances[0]:
                if key not in input_infos:
                    raise invalid_argument(f"JSON object: does not have named input: {key}")
                arrays[key] = json_to_ndarray([item[key] for item in instances], input_infos[key])
        else:
            if len(input_infos) != 1:
                raise invalid_argument(
                    f"Expecting object but got {_json_type(instances[0])} at item 0 of input list "
                    f"(the signature has {len(input_infos)} named inputs)"
                )
            (key,) = input_infos
            arrays[key] = json_to_ndarray(instances, input_infos[key])
        fmt = "row"
    else:
        inputs = doc["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            for key, value in inputs.items():
                if key not in input_infos:
                    raise invalid_argument(f"JSON object: does not have named input: {key}")
                arrays[key] = json_to_ndarray(value, input_infos[key])
        else:
            if len(input_infos) != 1:
                raise invalid_argument(
                    f"Expecting 'inputs' to be an object with {len(input_infos)} named inputs"
                )
            (key,) = input_infos
            arrays[key] = json_to_ndarray(inputs, input_infos[key])
        fmt = "columnar"
    for key, array in arrays.items():
        proto = request.inputs[key]
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=input_infos[key]))
    return fmt


def _feature_values(name: str, value: Any) -> tf.train.Feature:
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) or _is_b64(v) for v in values):
        out = []
        for v in values:
            if isinstance(v, str):
                out.append(v.encode("utf-8"))
            elif _is_b64(v):
                out.append(_b64decode(v))
            else:
                raise invalid_argument(f"Feature: {name} has mixed string and non-string values")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=out))
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise invalid_argument(f"Feature: {name} has a value of unsupported JSON type {_json_type(v)}")
    if any(isinstance(v, float) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _example(obj: Any, where: str) -> tf.train.Example:
    if not isinstance(obj, dict):
        raise invalid_argument(f"Expecting {where} to be an object")
    return tf.train.Example(
        features=tf.train.Features(feature={k: _feature_values(k, v) for k, v in obj.items()})
    )


def fill_example_input(doc: dict, request_input: input_pb2.Input) -> None:
    """Fill a Classify/Regress Input from {"context": {...}, "examples": [...]}."""
    examples = doc.get("examples")
    if examples is None:
        raise invalid_argument("Missing 'examples' key")
    if not isinstance(examples, list):
        raise invalid_argument("Expecting 'examples' to be an list/array")
    parsed = [_example(e, f"'examples' item {i}") for i, e in enumerate(examples)]
    if "context" in doc:
        context = _example(doc["context"], "'context'")
        for i, example in enumerate(parsed):
            for key in example.features.feature:
                if key in context.features.feature:
                    raise invalid_argument(f"Feature: {key} appears in both 'context' and example {i}")
        request_input.example_list_with_context.context.CopyFrom(context)
        request_input.example_list_with_context.examples.extend(parsed)
    else:
        request_input.example_list.examples.extend(parsed)


# -- tensors -> JSON -----------------------------------------------------------------------


def _json_leaf_list(array: np.ndarray, binary: bool) -> list:
    flat = array.ravel()
    if array.dtype == object or array.dtype.kind in "SU":
        out = []
        for v in flat:
            raw = v if isinstance(v, bytes) else str(v).encode()
            out.append({"b64": base64.b64encode(raw).decode()} if binary else raw.decode("utf-8", "replace"))
        return out
    if array.dtype.kind == "f" and array.dtype != np.float64:
        return [float(str(v)) for v in flat]
    return flat.tolist()


def tensor_to_json(array: np.ndarray, name: str) -> Any:
    """Nested JSON lists for an output tensor; ``*_bytes`` outputs as {"b64": ...}."""
    array = np.asarray(array)
    values = _json_leaf_list(array, name.endswith("_bytes"))
    if array.ndim == 0:
        return values[0]

    def build(shape: tuple[int, ...], offset: int) -> tuple[Any, int]:
        if len(shape) == 1:
            return values[offset : offset + shape[0]], offset + shape[0]
        out = []
        for _ in range(shape[0]):
            item, offset = build(shape[1:], offset)
            out.append(item)
        return out, offset

    return build(array.shape, 0)[0]


def predict_response_json(outputs: dict[str, np.ndarray], fmt: str) -> dict:
    """{"predictions": ...} for row requests, {"outputs": ...} for columnar ones."""
    if fmt == "columnar":
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return {"outputs": tensor_to_json(array, name)}
        return {"outputs": {name: tensor_to_json(array, name) for name, array in outputs.items()}}
    batch = None
    for name, array in outputs.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}"
            )
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return {"predictions": tensor_to_json(array, name)}
    rows = [{} for _ in range(batch or 0)]
    for name, array in outputs.items():
        for i, value in enumerate(tensor_to_json(array, name)):
            rows[i][name] = value
    return {"predictions": rows}


# -- the request handler -------------------------------------------------------------------


class RestApi:
    """Dispatches a (method, path, body) to the serving API; returns (HTTP status, JSON text)."""

    def __init__(self, api: ServingApi) -> None:
        self.api = api

    def _spec(
        self, name: str, version: str | None, label: str | None, signature: str = ""
    ) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=unquote(name), signature_name=signature)
        if version:
            try:
                spec.version.value = int(version)
            except ValueError:
                raise invalid_argument(f"Failed to convert version: {version} to numeric.") from None
        if label:
            spec.version_label = unquote(label)
        return spec

    def handle(self, method: str, path: str) -> tuple[re.Match | None, str]:
        """Match a path to an API; returns the match and the kind."""
        if method == "POST":
            match = _PREDICTION.fullmatch(path)
            return match, "prediction"
        if method == "GET":
            return _STATUS.fullmatch(path), "status"
        return None, ""

    def process(self, method: str, path: str, body: bytes) -> tuple[int, str, str, str, str]:
        """Return (HTTP status, body, model name, API name, status code name)."""
        model, api_name = "", "unknown"
        try:
            match, kind = self.handle(method, path)
            if match is None:
                raise invalid_argument(f"Malformed request: {method} {path}")
            if kind == "prediction":
                name, version, label, verb = match.groups()
                model, api_name = unquote(name), verb
                doc = _parse_body(body)
                spec = self._spec(name, version, label, _signature_name(doc))
                result = (
                    getattr(self, f"_{verb}")(spec, doc)
                    if verb in ("predict", "classify", "regress")
                    else None
                )
                if result is None:
                    raise invalid_argument(f"Malformed request: {method} {path}")
            else:
                name, version, label, sub = match.groups()
                if not name:
                    raise invalid_argument("Missing model name in request.")
                model = unquote(name)
                spec = self._spec(name, version, label)
                if sub and sub.lower() == "metadata":
                    api_name = "get_model_metadata"
                    request = get_model_metadata_pb2.GetModelMetadataRequest(
                        model_spec=spec, metadata_field=["signature_def"]
                    )
                    result = self._metadata_json(self.api.get_model_metadata(request))
                else:
                    api_name = "get_model_status"
                    request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
                    result = json_format.MessageToJson(
                        self.api.get_model_status(request), always_print_fields_with_no_presence=True
                    )
            return 200, result, model, api_name, "OK"
        except ServingError as exc:
            return exc.http_status, json.dumps({"error": exc.message}), model, api_name, exc.code
        except Exception as exc:
            log.exception("REST request failed")
            error = from_exception(exc, "INTERNAL")
            return error.http_status, json.dumps({"error": error.message}), model, api_name, error.code

    def _predict(self, spec: model_pb2.ModelSpec, doc: dict) -> str:
        servable = self.api.core.servable(spec)
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise invalid_argument(f'Serving signature name: "{signature_name}" not found in signature def')
        request = predict_pb2.PredictRequest(model_spec=spec)
        fmt = fill_predict_request(doc, {k: v.dtype for k, v in signature.inputs.items()}, request)
        response = self.api.predict(request, servable)
        outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        return json.dumps(predict_response_json(outputs, fmt))

    def _classify(self, spec: model_pb2.ModelSpec, doc: dict) -> str:
        request = classification_pb2.ClassificationRequest(model_spec=spec)
        fill_example_input(doc, request.input)
        response = self.api.classify(request)
        results = [
            [[c.label, float(str(np.float32(c.score)))] for c in classifications.classes]
            for classifications in response.result.classifications
        ]
        return json.dumps({"results": results})

    def _regress(self, spec: model_pb2.ModelSpec, doc: dict) -> str:
        request = regression_pb2.RegressionRequest(model_spec=spec)
        fill_example_input(doc, request.input)
        response = self.api.regress(request)
        return json.dumps({"results": [float(str(np.float32(r.value))) for r in response.result.regressions]})

    @staticmethod
    def _metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> str:
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
        return json.dumps(
            {
                "model_spec": json_format.MessageToDict(response.model_spec, **options),
                "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)},
            },
            indent=1,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle's algorithm on, the body
    # would wait for the client's delayed ACK (40 ms on Linux) on kept-alive
    # connections, a delay of this fixture's making, not of the API.
    disable_nagle_algorithm = True
    server_version = "TFServingStandin/0.1"
    server: RestServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self) -> None:
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        prometheus = self.server.prometheus_path
        if prometheus and path == prometheus and self.command == "GET":
            self._reply(200, metrics.render(), "text/plain; version=0.0.4")
            return
        if not _API_PATH.fullmatch(path):
            self._reply(404, json.dumps({"error": f"Not found: {self.command} {path}"}), "application/json")
            return
        status, text, model, api_name, code = self.server.rest_api.process(self.command, path, body)
        self._reply(status, text, "application/json")
        metrics.request(model, api_name, "REST", code, time.monotonic() - started)

    def _reply(self, status: int, text: str, content_type: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


class RestServer(ThreadingHTTPServer):
    """Threaded HTTP server of the REST API (and the Prometheus page, when configured)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, api: ServingApi, prometheus_path: str | None) -> None:
        self.rest_api = RestApi(api)
        self.prometheus_path = prometheus_path
        super().__init__(("0.0.0.0", port), _Handler)  # noqa: S104 - a server in a container
