"""Background re-admission of ejected hosts: probe each one when its ejection time is up.

One daemon thread per client, started at the first ejection (a client whose hosts never fail has
none), so that no user request ever waits on a probe of a sick host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tfsp_client.errors import ServingError
from tfsp_client.policy import HostPool

logger = logging.getLogger(__name__)

#: How often the thread looks for hosts whose ejection is up (ejections last seconds).
TICK_SECONDS = 0.1


class Prober:
    """Probes due hosts with ``probe(host, timeout)`` and tells the pool how it went."""

    def __init__(
        self,
        pool: HostPool,
        probe: Callable[[str, float], None],
        timeout: float,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._pool = pool
        self._probe = probe
        self._timeout = timeout
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread if it is not running (cheap to call at every ejection)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="tfsp-prober", daemon=True)
                self._thread.start()

    def probe_due(self) -> None:
        """Probe every due host once (the thread's work; the unit tests call it directly)."""
        for host in self._pool.due():
            try:
                self._probe(host, self._timeout)
            except ServingError as error:
                self._pool.probe_failed(host, type(error).__name__, str(error))
                logger.info("TF Serving %s still not answering: %s", host, error)
            else:
                self._pool.succeeded(host)
                logger.warning("TF Serving %s answers again: back in rotation", host)
                if self._on_change is not None:
                    self._on_change(host, False)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self.probe_due()

    def stop(self) -> None:
        """Stop the thread (it ends within one probe timeout)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(self._timeout + 1)
