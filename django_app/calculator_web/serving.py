"""The process-wide TF Serving client, built once from settings, and the calculator's signatures.

gunicorn forks its workers before any request, and the client is created on first use, so each
worker process gets its own channels and keeps them for its whole life.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from tfsp_client import Classification, ClientConfig, ServingError, TFServingClient, UpstreamError
from tfsp_client.config import split_target
from tfsp_client.tensors import shortest_float32

from calculator_web.metrics import (
    SERVING_HOST_EJECTED,
    SERVING_HOST_ERRORS,
    UPSTREAM_ERRORS,
    UPSTREAM_LATENCY,
)
from calculator_web.operands import OperandError, Operands

T = TypeVar("T")
logger = logging.getLogger(__name__)

_client: TFServingClient | None = None
_lock = threading.Lock()

# Operation -> (signature, output) of the calculator model.
PREDICT_SIGNATURES = {"add": "add", "subtract": "subtract", "multiply": "multiply"}
PREDICT_OUTPUT = "result"
CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"


def client_config() -> ClientConfig:
    """The client configuration from Django settings."""
    return ClientConfig(
        targets=tuple(settings.TFSP_TF_SERVING_TARGETS),
        rest_targets=tuple(settings.TFSP_TF_SERVING_REST_TARGETS),
        protocol=settings.TFSP_TF_SERVING_PROTOCOL,
        model_name=settings.TFSP_MODEL_NAME,
        timeout_seconds=settings.TFSP_TF_SERVING_TIMEOUT_SECONDS,
        attempt_timeout_seconds=settings.TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS,
        probe_timeout_seconds=settings.TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS,
        status_timeout_seconds=settings.TFSP_TF_SERVING_STATUS_TIMEOUT_SECONDS,
        calls_per_host=settings.TFSP_TF_SERVING_CALLS_PER_HOST,
        eject_after_failures=settings.TFSP_TF_SERVING_EJECT_AFTER_FAILURES,
        ejection_seconds=settings.TFSP_TF_SERVING_EJECTION_SECONDS,
        tls=settings.TFSP_TF_SERVING_TLS,
    )


def check_targets_resolve() -> None:
    """Refuse to start when a TF Serving host name does not resolve (a misspelt target).

    A name that resolves but does not answer is not refused: that is a host down, which the client
    routes around; refusing to start would turn one serving host's outage into a web outage.
    """
    config = client_config()
    variable = "TFSP_TF_SERVING_TARGETS" if config.protocol == "grpc" else "TFSP_TF_SERVING_REST_TARGETS"
    for target in config.hosts:
        host, port = split_target(target)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise ImproperlyConfigured(f"{variable}: {host} does not resolve ({error})") from None


def _ejection(host: str, ejected: bool) -> None:
    SERVING_HOST_EJECTED.labels(host).set(1 if ejected else 0)


def _host_error(host: str, kind: str) -> None:
    SERVING_HOST_ERRORS.labels(host, kind).inc()


def get_client() -> TFServingClient:
    """The one client of this process (created on first use, then reused)."""
    global _client
    config = client_config()
    if _client is None or _client.config != config:
        with _lock:
            if _client is None or _client.config != config:
                if _client is not None:
                    _client.close()
                _client = TFServingClient(config, on_error=_host_error, on_ejection=_ejection)
                for host in config.hosts:
                    _ejection(host, False)
    return _client


def observed(call: str, function: Callable[[], T]) -> T:
    """Run a client call, recording its latency or its error kind in the metrics."""
    try:
        answer = function()
    except ServingError as error:
        UPSTREAM_ERRORS.labels(call, type(error).__name__).inc()
        logger.warning("TF Serving %s failed on %s: %s", call, error.host or "-", error)
        raise
    UPSTREAM_LATENCY.labels(call).observe(answer.elapsed_ms / 1000)
    return answer


@dataclass(frozen=True)
class Calculation:
    """A calculator answer as the pages and the API show it."""

    operation: str
    result: float | list[float]
    model_version: int | None
    host: str
    elapsed_ms: float


def _shown(values: list[float], operands: Operands) -> float | list[float]:
    if len(values) != len(operands.a):
        raise UpstreamError(f"expected {len(operands.a)} results, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise OperandError("The result is too large for float32 (about ±3.4e38): use smaller numbers.")
    shown = [shortest_float32(v) for v in values]
    return shown[0] if operands.scalar else shown


def calculate(operation: str, operands: Operands) -> Calculation:
    """Predict with the operation's signature."""
    prediction = observed(
        operation,
        lambda: get_client().predict(
            PREDICT_SIGNATURES[operation], {"a": operands.a, "b": operands.b}, PREDICT_OUTPUT
        ),
    )
    return Calculation(
        operation,
        _shown(prediction.values, operands),
        prediction.model_version,
        prediction.host,
        prediction.elapsed_ms,
    )


def _examples(operands: Operands) -> list[dict[str, float]]:
    return [{"a": a, "b": b} for a, b in zip(operands.a, operands.b, strict=True)]


def classify(operands: Operands) -> Classification:
    """Classify each (a, b) pair with the model's classify signature."""
    return observed("classify", lambda: get_client().classify(CLASSIFY_SIGNATURE, _examples(operands)))


def regress(operands: Operands) -> Calculation:
    """Regress each (a, b) pair with the model's regress signature."""
    regression = observed("regress", lambda: get_client().regress(REGRESS_SIGNATURE, _examples(operands)))
    return Calculation(
        "regress",
        _shown(regression.values, operands),
        regression.model_version,
        regression.host,
        regression.elapsed_ms,
    )
