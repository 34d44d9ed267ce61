"""The machine's pressure stall information (PSI) through a drill, to explain a slow request.

Every test host is a container on the same two cores, so a request can be slow because the machine
was busy elsewhere (a host container restarting, an image loading) rather than because the stack
waited on a faulty host. Linux's PSI (``/proc/pressure/{cpu,io,memory}``) counts, in microseconds,
how long tasks waited for a core ("some": at least one task), for I/O or for memory ("full": every
non-idle task at once). A sampler thread reads the totals every ``interval`` seconds; ``during``
says how much each grew over a request's time, so that a drill's failure message says whether the
machine was held up while a slow request ran.

The load loop also takes ``cpu.some`` (how long at least one task waited for a core) as the most a
request may have lost to the machine's other work; see ``loadloop``. Without PSI (an older kernel,
or one booted with ``psi=0``) there are no samples and ``during`` is empty. Standard library only.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from pathlib import Path

PRESSURE_DIR = Path("/proc/pressure")
RESOURCES = ("cpu", "io", "memory")
INTERVAL_SECONDS = 0.1


def read_totals(directory: Path = PRESSURE_DIR) -> dict[str, int]:
    """Every ``total=`` of the PSI files, keyed ``cpu.some``, ``io.full``...; empty without PSI."""
    totals: dict[str, int] = {}
    for resource in RESOURCES:
        try:
            text = (directory / resource).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            kind, _, fields = line.partition(" ")
            for item in fields.split():
                key, _, value = item.partition("=")
                if key == "total" and value.isdigit():
                    totals[f"{resource}.{kind}"] = int(value)
    return totals


def _at(
    samples: list[tuple[float, dict[str, int]]], times: list[float], moment: float, key: str
) -> float | None:
    """A total at ``moment``, interpolated between the samples around it (None outside them)."""
    after = bisect_left(times, moment)
    if after >= len(samples) or (after == 0 and times[0] > moment):
        return None
    if times[after] == moment or after == 0:
        return float(samples[after][1].get(key, 0))
    (t0, before), (t1, later) = samples[after - 1], samples[after]
    share = (moment - t0) / (t1 - t0)
    return before.get(key, 0) + share * (later.get(key, 0) - before.get(key, 0))


def during(
    samples: list[tuple[float, dict[str, int]]], start: float, end: float, keys: tuple[str, ...] = ()
) -> dict[str, float]:
    """How much each total (or each of ``keys``) grew between ``start`` and ``end``, in ms.

    Each total is interpolated linearly between the samples around each end (PSI's counters grow
    steadily between two reads 100 ms apart); empty when the samples do not cover the span.
    """
    if not samples:
        return {}
    times = [when for when, _ in samples]
    growth = {}
    for key in keys or sorted(samples[-1][1]):
        first, last = _at(samples, times, start, key), _at(samples, times, end, key)
        if first is None or last is None:
            return {}
        growth[key] = max(0.0, last - first) / 1000
    return growth


def describe(growth: dict[str, float]) -> str:
    """``cpu.some 812 ms, io.full 0 ms, ...`` or a word saying there is nothing to show."""
    if not growth:
        return "no PSI figures"
    return ", ".join(f"{key} {value:.0f} ms" for key, value in growth.items())


class PressureSampler:
    """A daemon thread sampling ``read_totals`` with ``time.monotonic()``; a context manager."""

    def __init__(self, interval: float = INTERVAL_SECONDS, directory: Path = PRESSURE_DIR) -> None:
        self.interval = interval
        self.directory = directory
        #: (time.monotonic(), totals) of each sample, oldest first.
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pressure", daemon=True)

    def __enter__(self) -> PressureSampler:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self._sample()  # one before the first request
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sample()  # one after the last request

    def _sample(self) -> None:
        totals = read_totals(self.directory)
        if totals:
            self.samples.append((time.monotonic(), totals))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
