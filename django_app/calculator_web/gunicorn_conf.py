"""gunicorn settings for the web tier: ``gunicorn -c python:calculator_web.gunicorn_conf ...``.

Only what the app needs from gunicorn: in Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR set),
a dead worker's metric files are marked so that /metrics stops counting its live gauges.
Bind address, worker count and the like stay on the command line.
"""

from __future__ import annotations

import os


def child_exit(server, worker) -> None:
    """Tell prometheus-client that a worker is gone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
