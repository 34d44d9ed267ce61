"""A TF Serving client for the web tier: gRPC by default, REST as an option, no TensorFlow.

One ``TFServingClient`` per process, reused by every request: it holds one gRPC channel (or one
HTTP connection pool) per TF Serving host for its whole life. Calls go round-robin over the hosts;
a call that fails with UNAVAILABLE is retried once on another host. Every call has a deadline.
Failures surface as the typed errors of ``tfsp_client.errors``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import urllib3
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfsp_client.errors import (
    ModelNotFound,
    ServingError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tfsp_client.tensors import pack_float32, tensor_values

T = TypeVar("T")
PROTOCOLS = ("grpc", "rest")
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ClientConfig:
    """Where TF Serving is and how to talk to it."""

    targets: tuple[str, ...]
    model_name: str = "calculator"
    protocol: str = "grpc"
    rest_targets: tuple[str, ...] = ()
    timeout_seconds: float = 2.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {self.protocol!r}")
        if not self.hosts:
            raise ValueError(f"no TF Serving {self.protocol} targets configured")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")

    @property
    def hosts(self) -> tuple[str, ...]:
        """The host:port list for the selected protocol."""
        return self.targets if self.protocol == "grpc" else self.rest_targets


@dataclass(frozen=True)
class Answer:
    """Who answered a call and how long the whole call took (retries included)."""

    host: str
    elapsed_ms: float


@dataclass(frozen=True)
class Prediction(Answer):
    """A Predict result: the named output tensor, flattened."""

    values: list[float] = field(default_factory=list)
    model_version: int | None = None


@dataclass(frozen=True)
class Classification(Answer):
    """A Classify result: for each example, its (label, score) classes."""

    results: list[list[tuple[str, float]]] = field(default_factory=list)
    model_version: int | None = None


@dataclass(frozen=True)
class Regression(Answer):
    """A Regress result: one value per example."""

    values: list[float] = field(default_factory=list)
    model_version: int | None = None


@dataclass(frozen=True)
class VersionStatus:
    """One model version as GetModelStatus reports it."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass(frozen=True)
class HostStatus:
    """What one TF Serving host says about the model (``error`` is set when it did not answer)."""

    host: str
    versions: list[VersionStatus] = field(default_factory=list)
    error: str | None = None

    @property
    def available(self) -> bool:
        """True when the host serves at least one version of the model."""
        return any(v.state == "AVAILABLE" for v in self.versions)


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output."""

    dtype: str
    shape: list[int]


@dataclass(frozen=True)
class Signature:
    """One SignatureDef from GetModelMetadata."""

    name: str
    method: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclass(frozen=True)
class ModelMetadata(Answer):
    """GetModelMetadata: the model version and its signatures."""

    model_version: int | None = None
    signatures: dict[str, Signature] = field(default_factory=dict)


class _RoundRobin:
    """Thread-safe rotation over the hosts: each call starts one host further."""

    def __init__(self, hosts: tuple[str, ...]) -> None:
        self._hosts = hosts
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def order(self) -> list[str]:
        with self._lock:
            start = next(self._counter) % len(self._hosts)
        return list(self._hosts[start:] + self._hosts[:start])


class _Transport:
    """Protocol-specific calls; each method takes the host and the seconds left."""

    def predict(self, host: str, timeout: float, signature: str, inputs: dict[str, list[float]], output: str):
        raise NotImplementedError

    def classify(self, host: str, timeout: float, signature: str, examples: list[dict[str, float]]):
        raise NotImplementedError

    def regress(self, host: str, timeout: float, signature: str, examples: list[dict[str, float]]):
        raise NotImplementedError

    def model_status(self, host: str, timeout: float) -> list[VersionStatus]:
        raise NotImplementedError

    def metadata(self, host: str, timeout: float) -> tuple[int | None, dict[str, Signature]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


# ---------------------------------------------------------------------------------------------- gRPC

_GRPC_ERRORS: dict[grpc.StatusCode, type[ServingError]] = {
    grpc.StatusCode.UNAVAILABLE: UpstreamUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: UpstreamTimeout,
    grpc.StatusCode.INVALID_ARGUMENT: UpstreamRejected,
    grpc.StatusCode.FAILED_PRECONDITION: UpstreamRejected,
    grpc.StatusCode.OUT_OF_RANGE: UpstreamRejected,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
}


def _float_tensor(values: list[float]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
        tensor_content=pack_float32(values),
    )


def _examples(examples: list[dict[str, float]]) -> input_pb2.Input:
    for example in examples:
        pack_float32(list(example.values()))  # same float32 range check as Predict
    return input_pb2.Input(
        example_list=input_pb2.ExampleList(
            examples=[
                example_pb2.Example(
                    features=feature_pb2.Features(
                        feature={
                            key: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[value]))
                            for key, value in example.items()
                        }
                    )
                )
                for example in examples
            ]
        )
    )


def _version(spec: model_pb2.ModelSpec) -> int | None:
    return spec.version.value if spec.HasField("version") else None


class _GrpcTransport(_Transport):
    """One insecure channel per host, created once and shared by all threads."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        options = [
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # Come back quickly after a TF Serving restart (gRPC's default backoff grows to 120 s).
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.keepalive_timeout_ms", 5000),
            ("grpc.enable_retries", 0),  # retries are ours: once, on another host
            # Own connections per channel: never inherit a stale connection state from another client.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        self._channels = {host: grpc.insecure_channel(host, options=options) for host in config.targets}
        self._prediction = {
            h: prediction_service_pb2_grpc.PredictionServiceStub(c) for h, c in self._channels.items()
        }
        self._models = {h: model_service_pb2_grpc.ModelServiceStub(c) for h, c in self._channels.items()}

    def _spec(self, signature: str = "") -> model_pb2.ModelSpec:
        return model_pb2.ModelSpec(name=self._config.model_name, signature_name=signature)

    @staticmethod
    def _call(host: str, method: Callable[..., T], request: Any, timeout: float) -> T:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = error.details() if hasattr(error, "details") else str(error)
            raise _GRPC_ERRORS.get(code, UpstreamError)(f"{code.name}: {details}", host) from None

    def predict(self, host, timeout, signature, inputs, output):
        request = predict_pb2.PredictRequest(
            model_spec=self._spec(signature),
            inputs={name: _float_tensor(values) for name, values in inputs.items()},
            output_filter=[output],
        )
        response = self._call(host, self._prediction[host].Predict, request, timeout)
        if output not in response.outputs:
            raise UpstreamError(f"response has no output {output!r}", host)
        return tensor_values(response.outputs[output]), _version(response.model_spec)

    def classify(self, host, timeout, signature, examples):
        request = classification_pb2.ClassificationRequest(
            model_spec=self._spec(signature), input=_examples(examples)
        )
        response = self._call(host, self._prediction[host].Classify, request, timeout)
        results = [
            [(c.label, float(c.score)) for c in item.classes] for item in response.result.classifications
        ]
        return results, _version(response.model_spec)

    def regress(self, host, timeout, signature, examples):
        request = regression_pb2.RegressionRequest(
            model_spec=self._spec(signature), input=_examples(examples)
        )
        response = self._call(host, self._prediction[host].Regress, request, timeout)
        return [float(r.value) for r in response.result.regressions], _version(response.model_spec)

    def model_status(self, host, timeout):
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec())
        response = self._call(host, self._models[host].GetModelStatus, request, timeout)
        return [
            VersionStatus(
                version=int(s.version),
                state=get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                error_code=_error_code_name(s.status.error_code),
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ]

    def metadata(self, host, timeout):
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(), metadata_field=["signature_def"]
        )
        response = self._call(host, self._prediction[host].GetModelMetadata, request, timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" in response.metadata:
            response.metadata["signature_def"].Unpack(signature_map)
        signatures = {
            name: Signature(
                name=name,
                method=sig.method_name,
                inputs={k: _tensor_spec(v) for k, v in sorted(sig.inputs.items())},
                outputs={k: _tensor_spec(v) for k, v in sorted(sig.outputs.items())},
            )
            for name, sig in sorted(signature_map.signature_def.items())
            if not name.startswith("__")
        }
        return _version(response.model_spec), signatures

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def _error_code_name(code: int) -> str:
    """TF's error codes share gRPC's numbering."""
    return next((s.name for s in grpc.StatusCode if s.value[0] == code), str(code))


def _tensor_spec(info) -> TensorSpec:
    shape = [] if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
    return TensorSpec(dtype=types_pb2.DataType.Name(info.dtype), shape=shape)


# ---------------------------------------------------------------------------------------------- REST

_HTTP_ERRORS: dict[int, type[ServingError]] = {
    400: UpstreamRejected,
    404: ModelNotFound,
    429: UpstreamUnavailable,
    503: UpstreamUnavailable,
    504: UpstreamTimeout,
}


class _RestTransport(_Transport):
    """TF Serving's REST API through one urllib3 connection pool (keep-alive) per process."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._pool = urllib3.PoolManager(
            num_pools=max(4, len(config.rest_targets)), maxsize=16, retries=False
        )

    def _request(self, host: str, timeout: float, method: str, path: str, body: dict | None = None) -> dict:
        url = f"http://{host}/v1/models/{self._config.model_name}{path}"
        payload = json.dumps(body).encode() if body is not None else None
        if payload is not None and len(payload) > self._config.max_message_bytes:
            raise UpstreamRejected(f"request of {len(payload)} bytes exceeds the message size limit", host)
        try:
            response = self._pool.request(
                method,
                url,
                body=payload,
                headers={"Content-Type": "application/json"},
                timeout=urllib3.Timeout(total=timeout),
                preload_content=True,
            )
        except urllib3.exceptions.NewConnectionError as error:  # a subclass of ConnectTimeoutError
            raise UpstreamUnavailable(str(error), host) from None
        except urllib3.exceptions.TimeoutError as error:
            raise UpstreamTimeout(str(error), host) from None
        except urllib3.exceptions.HTTPError as error:
            raise UpstreamUnavailable(str(error), host) from None
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {"error": response.data[:200].decode(errors="replace")}
        if response.status != 200:
            error_class = _HTTP_ERRORS.get(response.status, UpstreamError)
            raise error_class(f"HTTP {response.status}: {data.get('error', '')}", host)
        return data

    def predict(self, host, timeout, signature, inputs, output):
        for values in inputs.values():
            pack_float32(values)
        data = self._request(
            host, timeout, "POST", ":predict", {"signature_name": signature, "inputs": inputs}
        )
        outputs = data.get("outputs")
        if isinstance(outputs, dict):
            outputs = outputs.get(output)
        if not isinstance(outputs, list):
            raise UpstreamError(f"response has no output {output!r}", host)
        return [float(v) for v in outputs], None

    def classify(self, host, timeout, signature, examples):
        data = self._request(
            host, timeout, "POST", ":classify", {"signature_name": signature, "examples": examples}
        )
        return [
            [(str(label), float(score)) for label, score in item] for item in data.get("results", [])
        ], None

    def regress(self, host, timeout, signature, examples):
        data = self._request(
            host, timeout, "POST", ":regress", {"signature_name": signature, "examples": examples}
        )
        return [float(v) for v in data.get("results", [])], None

    def model_status(self, host, timeout):
        data = self._request(host, timeout, "GET", "")
        return [
            VersionStatus(
                version=int(s["version"]),
                state=s.get("state", "UNKNOWN"),
                error_code=s.get("status", {}).get("error_code", "OK"),
                error_message=s.get("status", {}).get("error_message", ""),
            )
            for s in data.get("model_version_status", [])
        ]

    def metadata(self, host, timeout):
        data = self._request(host, timeout, "GET", "/metadata")
        version = data.get("model_spec", {}).get("version")
        defs = data.get("metadata", {}).get("signature_def", {}).get("signature_def", {})

        def spec(info: dict) -> TensorSpec:
            dims = info.get("tensor_shape", {}).get("dim", [])
            return TensorSpec(dtype=info.get("dtype", ""), shape=[int(d.get("size", -1)) for d in dims])

        signatures = {
            name: Signature(
                name=name,
                method=sig.get("method_name", ""),
                inputs={k: spec(v) for k, v in sorted(sig.get("inputs", {}).items())},
                outputs={k: spec(v) for k, v in sorted(sig.get("outputs", {}).items())},
            )
            for name, sig in sorted(defs.items())
            if not name.startswith("__")
        }
        return (int(version) if version else None), signatures

    def close(self) -> None:
        self._pool.clear()


# ---------------------------------------------------------------------------------------------- client


class TFServingClient:
    """The calls the web tier makes, with round-robin, one retry on UNAVAILABLE and a deadline."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._hosts = _RoundRobin(config.hosts)
        self._transport: _Transport = (
            _GrpcTransport(config) if config.protocol == "grpc" else _RestTransport(config)
        )

    def _with_failover(self, call: Callable[[str, float], T]) -> tuple[T, Answer]:
        """Run ``call(host, seconds_left)`` on the next host; on UNAVAILABLE once more on another host."""
        started = time.monotonic()
        deadline = started + self.config.timeout_seconds
        hosts = self._hosts.order()[:2]
        last_error: ServingError | None = None
        for host in hosts:
            left = deadline - time.monotonic()
            if left <= 0:
                raise UpstreamTimeout("deadline passed before a retry", host)
            try:
                result = call(host, left)
            except UpstreamUnavailable as error:
                last_error = error
                continue
            return result, Answer(host=host, elapsed_ms=(time.monotonic() - started) * 1000)
        assert last_error is not None
        raise last_error

    def predict(self, signature: str, inputs: dict[str, list[float]], output: str = "result") -> Prediction:
        """Predict with a signature; returns the flattened ``output`` tensor."""
        (values, version), answer = self._with_failover(
            lambda host, left: self._transport.predict(host, left, signature, inputs, output)
        )
        return Prediction(
            host=answer.host, elapsed_ms=answer.elapsed_ms, values=values, model_version=version
        )

    def classify(self, signature: str, examples: list[dict[str, float]]) -> Classification:
        """Classify tf.Examples built from float features."""
        (results, version), answer = self._with_failover(
            lambda host, left: self._transport.classify(host, left, signature, examples)
        )
        return Classification(
            host=answer.host, elapsed_ms=answer.elapsed_ms, results=results, model_version=version
        )

    def regress(self, signature: str, examples: list[dict[str, float]]) -> Regression:
        """Regress tf.Examples built from float features."""
        (values, version), answer = self._with_failover(
            lambda host, left: self._transport.regress(host, left, signature, examples)
        )
        return Regression(
            host=answer.host, elapsed_ms=answer.elapsed_ms, values=values, model_version=version
        )

    def metadata(self) -> ModelMetadata:
        """The model's signatures (GetModelMetadata)."""
        (version, signatures), answer = self._with_failover(self._transport.metadata)
        return ModelMetadata(
            host=answer.host, elapsed_ms=answer.elapsed_ms, model_version=version, signatures=signatures
        )

    def host_statuses(self) -> list[HostStatus]:
        """Ask every host for the model's status (no failover: the point is to see each host)."""
        statuses = []
        for host in self.config.hosts:
            try:
                versions = self._transport.model_status(host, self.config.timeout_seconds)
            except ServingError as error:
                statuses.append(HostStatus(host=host, error=error.user_message))
            else:
                statuses.append(HostStatus(host=host, versions=sorted(versions, key=lambda v: v.version)))
        return statuses

    def close(self) -> None:
        """Close the channels or connection pool."""
        self._transport.close()


__all__ = [
    "Classification",
    "ClientConfig",
    "HostStatus",
    "ModelMetadata",
    "Prediction",
    "Regression",
    "Signature",
    "TFServingClient",
    "TensorSpec",
    "VersionStatus",
]
