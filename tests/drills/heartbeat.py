"""Moments the test process itself could not run, so that a drill does not blame the system for them.

A drill's latency bound is about the stack (a web host routing around a frozen serving host, say),
but a request's time is taken by the test process, which shares the machine's two cores with every
test host. When the whole process is held up (the cores busy elsewhere, a long GIL hold), every
request in flight looks slow at once. A heartbeat thread ticks every ``tick`` seconds; a gap
between two ticks longer than ``stall`` is such a moment. ``held_up_ms`` says how much of a request
overlapped them, and a drill checks the request's time less that.

A request waiting on the network (``requests`` or gRPC) releases the GIL, so the heartbeat keeps
ticking through a slow answer: a real wait still counts in full.

Standard library only: the web tier's tests (their own virtualenv) use it too.
"""

from __future__ import annotations

import threading
import time

#: The heartbeat's tick, and the gap between ticks that counts as the process being held up.
TICK_SECONDS = 0.005
STALL_SECONDS = 0.05


class Heartbeat:
    """A daemon thread that records every gap longer than ``stall`` seconds; use as a context manager."""

    def __init__(self, tick: float = TICK_SECONDS, stall: float = STALL_SECONDS) -> None:
        self.tick = tick
        self.stall = stall
        #: (start, end) of each moment the heartbeat did not tick, in time.monotonic() seconds.
        self.stalls: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            if now - last > self.stall:
                self.stalls.append((last, now))
            last = now

    def held_up_ms(self, started: float, elapsed_ms: float) -> float:
        """How long the process was held up while a request ran (``started``: time.monotonic())."""
        return held_up_ms(self.stalls, started, elapsed_ms)


def held_up_ms(stalls: list[tuple[float, float]], started: float, elapsed_ms: float) -> float:
    """The part of [started, started + elapsed_ms] covered by ``stalls``, in ms."""
    end = started + elapsed_ms / 1000
    return 1000 * sum(max(0.0, min(end, stop) - max(started, start)) for start, stop in stalls)
