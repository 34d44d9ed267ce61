"""TF Serving's gRPC API: one channel per host, with gRPC's own keepalive, retry and health checking.

Each channel carries (see README, "What gRPC does and what the client does"):

- keepalive pings, so that a connection to a frozen or cut-off host is found dead and replaced
  instead of holding calls until TCP gives up;
- a service config with a ``retryPolicy`` for these idempotent calls (UNAVAILABLE, retried once on
  the same host after a few milliseconds, for a connection lost under a call) and
  ``retryThrottling`` (gRPC's retry budget);
- ``healthCheckConfig``: gRPC's client-side health checking watches ``grpc.health.v1.Health``
  (TF Serving's ``--enable_grpc_healthcheck_service``), so calls to a host that says NOT_SERVING
  (one shutting down) fail at once with UNAVAILABLE and go to another host. gRPC does this only
  under a load-balancing policy other than pick_first, hence ``round_robin`` over the addresses of
  one host. A server without the health service answers UNIMPLEMENTED and counts as healthy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
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

from tfsp_client.config import ClientConfig
from tfsp_client.errors import (
    ModelNotFound,
    ServingError,
    UnknownVersionLabel,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tfsp_client.results import Signature, TensorSpec, VersionStatus
from tfsp_client.tensors import pack_float32, tensor_values
from tfsp_client.transport import Transport

T = TypeVar("T")

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [
        {
            "name": [
                {"service": "tensorflow.serving.PredictionService"},
                {"service": "tensorflow.serving.ModelService", "method": "GetModelStatus"},
            ],
            "retryPolicy": {
                "maxAttempts": 2,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.05s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


def channel_options(config: ClientConfig) -> list[tuple[str, Any]]:
    """The arguments of every channel."""
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        # A connection whose pings go unanswered for 1 s is dead (a frozen or cut-off host): gRPC
        # closes it and reconnects. gRPC's server default takes a ping on an idle connection more
        # often than every 5 minutes as abuse and closes the connection after a few (GOAWAY
        # "too_many_pings", a call in flight on it lost): the tf_serving role allows them from
        # every 4 s (tf_serving_grpc_channel_arguments; tests/grpc_channel_arguments checks both).
        ("grpc.keepalive_time_ms", 5000),
        ("grpc.keepalive_timeout_ms", 1000),
        # Come back quickly after a TF Serving restart (gRPC's default backoff grows to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # Own connections per channel: never inherit a stale connection state from another client.
        ("grpc.use_local_subchannel_pool", 1),
    ]


# How gRPC words an UNAVAILABLE that it gave without sending the call: the channel has no
# connection to the host (refused, unreachable), so the pick failed before any byte went out.
_NOT_SENT_MARKERS = ("connections to all backends failing", "failed to connect to all addresses")

_GRPC_ERRORS: dict[grpc.StatusCode, type[ServingError]] = {
    grpc.StatusCode.UNAVAILABLE: UpstreamUnavailable,
    # The client never cancels its own calls (they are blocking, bounded by a deadline), so a
    # CANCELLED comes from the other end: a server cancels the calls it still holds when it shuts
    # down, and grpcio's client without its EventEngine reports a call that meets that race as
    # CANCELLED (a serving host's restart under load, about one call in ten thousand). No answer,
    # then: the call goes to the next host like an UNAVAILABLE one.
    grpc.StatusCode.CANCELLED: UpstreamUnavailable,
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


def channel_credentials(config: ClientConfig) -> grpc.ChannelCredentials | None:
    """Mutual TLS credentials from ``config.tls``: trust its CA only, present its certificate.

    None for plain gRPC. The server's certificate must name the host as the target gives it.
    """
    if config.tls is None:
        return None
    pem = config.tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=pem.ca, private_key=pem.key, certificate_chain=pem.cert
    )


class GrpcTransport(Transport):
    """One channel per host (mutual TLS when configured), created once and shared by all threads."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        options = channel_options(config)
        credentials = channel_credentials(config)
        self._channels = {
            host: grpc.secure_channel(host, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(host, options=options)
            for host in config.targets
        }
        self._prediction = {
            h: prediction_service_pb2_grpc.PredictionServiceStub(c) for h, c in self._channels.items()
        }
        self._models = {h: model_service_pb2_grpc.ModelServiceStub(c) for h, c in self._channels.items()}
        self._health = {h: health_pb2_grpc.HealthStub(c) for h, c in self._channels.items()}

    def _spec(self, signature: str = "", version_label: str | None = None) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self._config.model_name, signature_name=signature)
        if version_label is not None:
            spec.version_label = version_label
        return spec

    @classmethod
    def _call(cls, host: str, method: Callable[..., T], request: Any, timeout: float) -> T:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as error:
            cls._raise(host, error)

    @staticmethod
    def _raise(host: str, error: grpc.RpcError):
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        if code == grpc.StatusCode.INVALID_ARGUMENT and UnknownVersionLabel.marker in (details or ""):
            raise UnknownVersionLabel(f"{code.name}: {details}", host) from None
        if code == grpc.StatusCode.UNAVAILABLE and any(m in (details or "") for m in _NOT_SENT_MARKERS):
            raise UpstreamUnavailable(f"{code.name}: {details}", host, sent=False) from None
        raise _GRPC_ERRORS.get(code, UpstreamError)(f"{code.name}: {details}", host) from None

    def predict(self, host, timeout, signature, inputs, output, version_label=None):
        request = predict_pb2.PredictRequest(
            model_spec=self._spec(signature, version_label),
            inputs={name: _float_tensor(values) for name, values in inputs.items()},
            output_filter=[output],
        )
        response = self._call(host, self._prediction[host].Predict, request, timeout)
        if output not in response.outputs:
            raise UpstreamError(f"response has no output {output!r}", host)
        return tensor_values(response.outputs[output]), _version(response.model_spec)

    def classify(self, host, timeout, signature, examples, version_label=None):
        request = classification_pb2.ClassificationRequest(
            model_spec=self._spec(signature, version_label), input=_examples(examples)
        )
        response = self._call(host, self._prediction[host].Classify, request, timeout)
        results = [
            [(c.label, float(c.score)) for c in item.classes] for item in response.result.classifications
        ]
        return results, _version(response.model_spec)

    def regress(self, host, timeout, signature, examples, version_label=None):
        request = regression_pb2.RegressionRequest(
            model_spec=self._spec(signature, version_label), input=_examples(examples)
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

    def probe(self, host, timeout):
        try:
            response = self._health[host].Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return  # no health service (the flag is off): an answer all the same
            self._raise(host, error)
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise UpstreamUnavailable(f"health: {status}", host)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def _error_code_name(code: int) -> str:
    """TF's error codes share gRPC's numbering."""
    return next((s.name for s in grpc.StatusCode if s.value[0] == code), str(code))


def _tensor_spec(info) -> TensorSpec:
    shape = [] if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
    return TensorSpec(dtype=types_pb2.DataType.Name(info.dtype), shape=shape)
