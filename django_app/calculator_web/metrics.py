"""Prometheus metrics (prometheus-client): requests and latencies per endpoint and operation,
TF Serving call latencies and upstream errors (by the version label asked for, "" outside a
release), each TF Serving host as the client sees it (ejected or not, attempts that got no answer
by kind), and a release's routing and shadow comparisons.

With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (prometheus-client's own variable) to an
empty directory writable by the app and use ``calculator_web.gunicorn_conf`` so that /metrics
aggregates every worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

REQUESTS = Counter(
    "tfsp_web_requests_total",
    "HTTP requests handled, by endpoint, calculator operation and status code.",
    ["endpoint", "operation", "status"],
)
REQUEST_LATENCY = Histogram(
    "tfsp_web_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint and calculator operation.",
    ["endpoint", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
UPSTREAM_LATENCY = Histogram(
    "tfsp_web_upstream_duration_seconds",
    "Time of successful TF Serving calls (retries included), by call and version label asked for.",
    ["call", "version_label"],
    buckets=UPSTREAM_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "tfsp_web_upstream_errors_total",
    "Failed TF Serving calls, by call, version label asked for and error kind.",
    ["call", "version_label", "kind"],
)

SERVING_HOST_EJECTED = Gauge(
    "tfsp_web_serving_host_ejected",
    "1 while the client skips the TF Serving host after repeated failures (in any live worker).",
    ["host"],
    multiprocess_mode="livemax",
)
SERVING_HOST_ERRORS = Counter(
    "tfsp_web_serving_host_errors_total",
    "Attempts on a TF Serving host that got no answer (the call moved on), by host and kind.",
    ["host", "kind"],
)

ROUTING_PERCENT = Gauge(
    "tfsp_web_routing_percent",
    "Share of user requests of the release routing in force: to the canary, or shadowed to it.",
    ["kind"],
    multiprocess_mode="livemax",
)
ROUTING_ERRORS = Counter(
    "tfsp_web_routing_errors_total",
    "Versions of the release routing file that could not be read or were not valid (each counted once).",
)
SHADOW_REQUESTS = Counter(
    "tfsp_web_shadow_requests_total",
    "Shadow calls to the canary, by operation and outcome (match, mismatch, error, skipped).",
    ["operation", "outcome"],
)
SHADOW_LATENCY = Histogram(
    "tfsp_web_shadow_duration_seconds",
    "Time of shadow calls to the canary that got an answer, by operation.",
    ["operation"],
    buckets=UPSTREAM_BUCKETS,
)


class MetricsMiddleware:
    """Count and time every request; views label the operation via ``request.metrics_operation``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        endpoint = match.url_name if match and match.url_name else "other"
        if endpoint != "metrics":
            operation = getattr(request, "metrics_operation", "") or "none"
            REQUEST_LATENCY.labels(endpoint, operation).observe(time.perf_counter() - started)
            REQUESTS.labels(endpoint, operation, str(response.status_code)).inc()
        return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = DEFAULT_REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
