"""The process-wide TF Serving client, built once from settings, and the calculator's signatures.

gunicorn forks its workers before any request, and the client is created on first use, so each
worker process gets its own channels and keeps them for its whole life. The same holds for the
release routing (``routing``: which version label a request asks for, re-checked at most once a
second) and the shadow pool (``shadow``: the canary's answers compared in the background).
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from tfsp_client import Classification, ClientConfig, ServingError, TFServingClient, UpstreamError
from tfsp_client.config import split_target
from tfsp_client.results import Answer
from tfsp_client.tensors import shortest_float32

from calculator_web.metrics import (
    ROUTING_ERRORS,
    ROUTING_PERCENT,
    SERVING_HOST_EJECTED,
    SERVING_HOST_ERRORS,
    UPSTREAM_ERRORS,
    UPSTREAM_LATENCY,
)
from calculator_web.operands import OperandError, Operands
from calculator_web.routing import Release, RoutingFile
from calculator_web.shadow import ShadowRunner, classes_difference, values_difference

T = TypeVar("T")
logger = logging.getLogger(__name__)

_config: ClientConfig | None = None
_client: TFServingClient | None = None
_lock = threading.Lock()
_routing: RoutingFile | None = None
_routing_lock = threading.Lock()
_shadows: ShadowRunner | None = None
_shadows_lock = threading.Lock()
#: A number in [0, 1) per draw: which label a request asks for, whether it is shadowed (tests fix it).
draw: Callable[[], float] = random.random

# Operation -> (signature, output) of the calculator model.
PREDICT_SIGNATURES = {"add": "add", "subtract": "subtract", "multiply": "multiply"}
PREDICT_OUTPUT = "result"
CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"


def client_config() -> ClientConfig:
    """The client configuration from Django settings (built once, again after a TFSP_ setting changes).

    Read on every request: building it anew from a dozen settings cost about 26 µs of each request.
    Settings only change in tests (override_settings), which send ``setting_changed``.
    """
    global _config
    config = _config
    if config is None:
        config = _config = _config_from_settings()
    return config


@receiver(setting_changed)
def _forget_config(*, setting: str, **_) -> None:
    global _config
    if setting.startswith("TFSP_"):
        _config = None


def _config_from_settings() -> ClientConfig:
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
                    _close_shadows()
                    _client.close()
                _client = TFServingClient(config, on_error=_host_error, on_ejection=_ejection)
                for host in config.hosts:
                    _ejection(host, False)
    return _client


def _routing_changed(release: Release | None) -> None:
    ROUTING_PERCENT.labels("canary").set(release.canary_percent if release else 0)
    ROUTING_PERCENT.labels("shadow").set(release.shadow_percent if release else 0)


def _routing_error(message: str) -> None:
    ROUTING_ERRORS.inc()


def current_release() -> Release | None:
    """The release in force in this process (None: no release, or no routing file configured)."""
    global _routing
    path = settings.TFSP_ROUTING_FILE
    if not path:
        return None
    routing = _routing
    if routing is None or routing.path != path:
        with _routing_lock:
            if _routing is None or _routing.path != path:
                _routing = RoutingFile(path, on_change=_routing_changed, on_error=_routing_error)
                _routing_changed(None)
            routing = _routing
    return routing.current()


def pick_label(release: Release | None) -> str | None:
    """The version label one request asks for: the canary's for ``canary_percent`` % of them."""
    if release is None:
        return None
    return release.canary_label if draw() * 100 < release.canary_percent else release.stable_label


def shadow_runner() -> ShadowRunner:
    """This process's shadow pool (created at the first shadow call, after gunicorn's fork)."""
    global _shadows
    runner = _shadows
    if runner is None or runner.pid != os.getpid():
        with _shadows_lock:
            if _shadows is None or _shadows.pid != os.getpid():
                _shadows = ShadowRunner()
            runner = _shadows
    return runner


def _close_shadows() -> None:
    global _shadows
    with _shadows_lock:
        if _shadows is not None and _shadows.pid == os.getpid():
            _shadows.shutdown()
        _shadows = None


def _shadow(
    release: Release,
    operation: str,
    operands: int,
    call: Callable[[], Answer],
    difference: Callable[[Answer], str | None],
) -> None:
    """Send a request stable answered to the canary too, in the background, ``shadow_percent`` % of the time.

    Called once the user's answer is known; never waits for the shadow call and never raises.
    """
    try:
        if draw() * 100 < release.shadow_percent:
            shadow_runner().submit(operation, operands, call, difference)
    except Exception:
        logger.exception("shadow %s could not be submitted", operation)


def _shadowed(release: Release | None, label: str | None) -> bool:
    """Whether a request's answer is a candidate for shadowing: it came from stable, shadowing is on."""
    return release is not None and label == release.stable_label and release.shadow_percent > 0


def observed(call: str, function: Callable[[], T], version_label: str | None = None) -> T:
    """Run a client call, recording its latency or its error kind in the metrics."""
    label = version_label or ""
    try:
        answer = function()
    except ServingError as error:
        UPSTREAM_ERRORS.labels(call, label, type(error).__name__).inc()
        logger.warning("TF Serving %s failed on %s: %s", call, error.host or "-", error)
        raise
    UPSTREAM_LATENCY.labels(call, label).observe(answer.elapsed_ms / 1000)
    return answer


@dataclass(frozen=True)
class Calculation:
    """A calculator answer as the pages and the API show it."""

    operation: str
    result: float | list[float]
    model_version: int | None
    host: str
    elapsed_ms: float
    version_label: str | None = None


def _shown(values: list[float], operands: Operands) -> float | list[float]:
    if len(values) != len(operands.a):
        raise UpstreamError(f"expected {len(operands.a)} results, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise OperandError("The result is too large for float32 (about ±3.4e38): use smaller numbers.")
    shown = [shortest_float32(v) for v in values]
    return shown[0] if operands.scalar else shown


def calculate(operation: str, operands: Operands) -> Calculation:
    """Predict with the operation's signature (and the version label of the release's routing)."""
    release = current_release()
    label = pick_label(release)
    signature, inputs = PREDICT_SIGNATURES[operation], {"a": operands.a, "b": operands.b}
    client = get_client()
    prediction = observed(
        operation,
        lambda: client.predict(signature, inputs, PREDICT_OUTPUT, version_label=label),
        label,
    )
    calculation = Calculation(
        operation,
        _shown(prediction.values, operands),
        prediction.model_version,
        prediction.host,
        prediction.elapsed_ms,
        label,
    )
    if _shadowed(release, label):
        _shadow(
            release,
            operation,
            len(operands.a),
            lambda: client.shadow_predict(
                signature, inputs, PREDICT_OUTPUT, version_label=release.canary_label
            ),
            lambda canary: values_difference(prediction.values, canary.values, release.tolerance),
        )
    return calculation


def _examples(operands: Operands) -> list[dict[str, float]]:
    return [{"a": a, "b": b} for a, b in zip(operands.a, operands.b, strict=True)]


def classify(operands: Operands) -> Classification:
    """Classify each (a, b) pair with the model's classify signature."""
    release = current_release()
    label = pick_label(release)
    examples = _examples(operands)
    client = get_client()
    classification = observed(
        "classify", lambda: client.classify(CLASSIFY_SIGNATURE, examples, version_label=label), label
    )
    if _shadowed(release, label):
        _shadow(
            release,
            "classify",
            len(operands.a),
            lambda: client.shadow_classify(CLASSIFY_SIGNATURE, examples, version_label=release.canary_label),
            lambda canary: classes_difference(classification.results, canary.results, release.tolerance),
        )
    return classification


def regress(operands: Operands) -> Calculation:
    """Regress each (a, b) pair with the model's regress signature."""
    release = current_release()
    label = pick_label(release)
    examples = _examples(operands)
    client = get_client()
    regression = observed(
        "regress", lambda: client.regress(REGRESS_SIGNATURE, examples, version_label=label), label
    )
    calculation = Calculation(
        "regress",
        _shown(regression.values, operands),
        regression.model_version,
        regression.host,
        regression.elapsed_ms,
        label,
    )
    if _shadowed(release, label):
        _shadow(
            release,
            "regress",
            len(operands.a),
            lambda: client.shadow_regress(REGRESS_SIGNATURE, examples, version_label=release.canary_label),
            lambda canary: values_difference(regression.values, canary.values, release.tolerance),
        )
    return calculation
