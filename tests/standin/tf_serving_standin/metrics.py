"""Prometheus metrics in the text format, named like TF Serving's.

Exported at the monitoring config's path on the REST port when
``prometheus_config { enable: true }`` is given. Only a few of TF Serving's
metrics are kept (request count and latency per model and API, model loads).
"""

from __future__ import annotations

import threading
from collections import defaultdict

_BUCKETS_US = (10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000)
_lock = threading.Lock()
_request_count: dict[tuple[str, str], int] = defaultdict(int)
_request_latency: dict[tuple[str, str, str], list[float]] = {}
_load_count: dict[tuple[str, str], int] = defaultdict(int)
_unload_count: dict[str, int] = defaultdict(int)


def request(model_name: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
    """Record one finished request."""
    micros = seconds * 1e6
    with _lock:
        _request_count[(model_name, status)] += 1
        hist = _request_latency.setdefault((model_name, api, entrypoint), [0] * (len(_BUCKETS_US) + 2))
        for i, bound in enumerate(_BUCKETS_US):
            if micros <= bound:
                hist[i] += 1
        hist[-2] += 1  # count
        hist[-1] += micros  # sum


def model_load(model_name: str, model_path: str, status: str) -> None:
    """Record one load attempt."""
    with _lock:
        _load_count[(model_path, status)] += 1


def model_unloaded(model_name: str) -> None:
    """Record one unload."""
    with _lock:
        _unload_count[model_name] += 1


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render() -> str:
    """The Prometheus text page."""
    lines: list[str] = []
    with _lock:
        lines.append("# TYPE :tensorflow:serving:request_count counter")
        for (model, status), count in sorted(_request_count.items()):
            lines.append(
                f':tensorflow:serving:request_count{{model_name="{_esc(model)}",status="{status}"}} {count}'
            )
        lines.append("# TYPE :tensorflow:serving:request_latency histogram")
        for (model, api, entrypoint), hist in sorted(_request_latency.items()):
            labels = f'model_name="{_esc(model)}",API="{api}",entrypoint="{entrypoint}"'
            for i, bound in enumerate(_BUCKETS_US):
                lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},le="{bound}"}} {hist[i]}')
            lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} {hist[-2]}')
            lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {hist[-1]:.1f}")
            lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {hist[-2]}")
        lines.append("# TYPE :tensorflow:cc:saved_model:load_attempt_count counter")
        for (path, status), count in sorted(_load_count.items()):
            lines.append(
                f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{_esc(path)}",'
                f'status="{status}"}} {count}'
            )
        lines.append("# TYPE :tensorflow:serving:model_unload_count counter")
        for model, count in sorted(_unload_count.items()):
            lines.append(f':tensorflow:serving:model_unload_count{{model_name="{_esc(model)}"}} {count}')
    return "\n".join(lines) + "\n"
