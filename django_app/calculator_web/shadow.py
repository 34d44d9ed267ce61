"""Shadow traffic: the canary's answers to real requests, compared in the background with stable's.

During a release, a share of the requests answered by the stable version are sent again to the
canary version by a small per-process thread pool, after the user already has the answer; the two
answers are compared within the release's tolerance and the outcome counted
(``tfsp_web_shadow_requests_total{operation, outcome}``: match, mismatch, error, or skipped when
the backlog is full). Nothing here can change, delay or fail a user's request: submitting never
blocks, and the comparison runs on the pool's threads.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tfsp_client import ServingError
from tfsp_client.results import Answer

from calculator_web.metrics import SHADOW_LATENCY, SHADOW_REQUESTS

logger = logging.getLogger(__name__)

#: Shadow calls are a sample: 2 threads, and at most this many waiting or running per process.
WORKERS = 2
BACKLOG = 32


def _close(expected: float, got: float, tolerance: float) -> bool:
    return math.isclose(expected, got, rel_tol=tolerance, abs_tol=tolerance)


def values_difference(expected: Sequence[float], got: Sequence[float], tolerance: float) -> str | None:
    """None when the canary's values match stable's element-wise, else the first difference in words."""
    if len(expected) != len(got):
        return f"{len(expected)} values from stable, {len(got)} from the canary"
    for index, (mine, theirs) in enumerate(zip(expected, got, strict=True)):
        if not _close(mine, theirs, tolerance):
            return f"value {index}: stable {mine!r}, canary {theirs!r}"
    return None


def classes_difference(
    expected: Sequence[Sequence[tuple[str, float]]],
    got: Sequence[Sequence[tuple[str, float]]],
    tolerance: float,
) -> str | None:
    """None when every example has the same classes (label and score, in order), else the first difference."""
    if len(expected) != len(got):
        return f"{len(expected)} results from stable, {len(got)} from the canary"
    for index, (mine, theirs) in enumerate(zip(expected, got, strict=True)):
        if len(mine) != len(theirs):
            return f"result {index}: {len(mine)} classes from stable, {len(theirs)} from the canary"
        for (label, score), (their_label, their_score) in zip(mine, theirs, strict=True):
            if label != their_label or not _close(score, their_score, tolerance):
                return f"result {index}: stable {(label, score)!r}, canary {(their_label, their_score)!r}"
    return None


class ShadowRunner:
    """A bounded background pool for shadow calls (threads start at the first call, per process)."""

    def __init__(self, *, workers: int = WORKERS, backlog: int = BACKLOG) -> None:
        self.pid = os.getpid()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfsp-shadow")
        self._slots = threading.BoundedSemaphore(backlog)

    def submit(
        self,
        operation: str,
        operands: int,
        call: Callable[[], Answer],
        difference: Callable[[Answer], str | None],
    ) -> bool:
        """Queue ``call`` and the comparison of its answer; False (counted "skipped") when the pool is full.

        Never blocks and never raises for a full or closed pool.
        """
        if not self._slots.acquire(blocking=False):
            SHADOW_REQUESTS.labels(operation, "skipped").inc()
            return False
        try:
            self._executor.submit(self._run, operation, operands, call, difference)
        except RuntimeError:  # shut down (the client was replaced)
            self._slots.release()
            SHADOW_REQUESTS.labels(operation, "skipped").inc()
            return False
        return True

    def _run(
        self,
        operation: str,
        operands: int,
        call: Callable[[], Answer],
        difference: Callable[[Answer], str | None],
    ) -> None:
        try:
            try:
                answer = call()
            except ServingError as error:
                SHADOW_REQUESTS.labels(operation, "error").inc()
                logger.info("shadow %s to the canary failed on %s: %s", operation, error.host or "-", error)
                return
            SHADOW_LATENCY.labels(operation).observe(answer.elapsed_ms / 1000)
            differs = difference(answer)
            if differs is None:
                SHADOW_REQUESTS.labels(operation, "match").inc()
                return
            logger.warning(
                "shadow %s (%d operands): the canary's answer differs from stable's: %s",
                operation,
                operands,
                differs,
            )
            SHADOW_REQUESTS.labels(operation, "mismatch").inc()
        except Exception:  # a bug here must not kill the pool's thread silently
            SHADOW_REQUESTS.labels(operation, "error").inc()
            logger.exception("shadow %s failed", operation)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        """Drop the calls still waiting and let the running ones finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
