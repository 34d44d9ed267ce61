"""Which host a call goes to: round-robin over admitted hosts, ejection of failing ones, retry budget.

Hand-written because gRPC Python cannot do it across our channels (see README, "What gRPC does
and what the client does"): each TF Serving host has its own channel, so that the client knows who
answered and can report each host; gRPC's retries, outlier ejection and retry throttling all work
inside one channel.

The rules, modelled on gRPC's outlier ejection and retry throttling (gRFC A50, A6):

- Admitted hosts take turns in runs of ``calls_per_turn`` consecutive calls (1: strict
  round-robin). A run keeps one host's connection and threads busy instead of waking an idle
  host for every other call; it measurably cuts the latency of a lightly loaded client (README,
  "Turns of several calls") while, over many calls and processes, the hosts share the load evenly.
- A host that fails ``eject_after`` attempts in a row (timeout or unreachable: never an answer
  such as "invalid argument") is ejected: calls skip it for ``base_seconds``, doubled at each
  failed probe up to ``max_seconds``. A success resets the count.
- An ejected host whose time is up is "due": the client probes it in the background and
  re-admits it when the probe answers, or ejects it again for longer.
- When every host is ejected, calls still try them all (as Envoy's panic routing does): a
  possibly sick host beats a certain failure.
- A failed attempt spends a token of a budget (``max_tokens``, refilled by ``token_ratio`` per
  success, as gRPC's retryThrottling); below half the budget, calls are not re-issued, so a sick
  fleet gets one attempt per call rather than one per host. An attempt that never left the client
  (no connection to the host: one restarting refuses them) spends none, as gRPC's transparent
  retries are not throttled: else a few planned restarts drain a quiet worker's budget and its
  next call to a restarting host fails instead of moving on.

No sleeps and no threads here: time comes from ``clock`` (a fake one in the unit tests).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tfsp_client.results import HostHealth


@dataclass
class _Host:
    name: str
    label: str
    failures: int = 0
    ejections: int = 0
    ejected_until: float | None = None
    errors: Counter = field(default_factory=Counter)
    last_error: str | None = None


class HostPool:
    """Thread-safe routing state of one client's hosts."""

    def __init__(
        self,
        hosts: tuple[str, ...],
        *,
        eject_after: int = 2,
        base_seconds: float = 2.0,
        max_seconds: float = 30.0,
        max_tokens: float = 10.0,
        token_ratio: float = 0.1,
        calls_per_turn: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hosts = [_Host(name, f"serving host {i}") for i, name in enumerate(hosts, start=1)]
        self._by_name = {h.name: h for h in self._hosts}
        self._eject_after = eject_after
        self._base = base_seconds
        self._max = max_seconds
        self._max_tokens = max_tokens
        self._tokens = max_tokens
        self._token_ratio = token_ratio
        self._calls_per_turn = calls_per_turn
        self._clock = clock
        self._calls = 0
        self._lock = threading.Lock()

    def label(self, host: str) -> str:
        """The public name of a host ("serving host 1"), fit to show on a page."""
        return self._by_name[host].label

    def order(self) -> list[str]:
        """The hosts to try for one call: admitted ones in rotation, then ejected ones (soonest due).

        The first admitted host changes every ``calls_per_turn`` calls.
        """
        with self._lock:
            admitted = [h.name for h in self._hosts if h.ejected_until is None]
            ejected = sorted((h for h in self._hosts if h.ejected_until is not None), key=_due)
            if admitted:
                start = self._calls // self._calls_per_turn % len(admitted)
                admitted = admitted[start:] + admitted[:start]
            self._calls += 1
            return admitted + [h.name for h in ejected]

    def peek(self) -> str:
        """The host the next call would try first, without taking a turn (for shadow calls)."""
        with self._lock:
            admitted = [h.name for h in self._hosts if h.ejected_until is None]
            if admitted:
                return admitted[self._calls // self._calls_per_turn % len(admitted)]
            return min(self._hosts, key=_due).name

    def is_ejected(self, host: str) -> bool:
        """Whether calls currently skip ``host`` (while any admitted host is left)."""
        with self._lock:
            return self._by_name[host].ejected_until is not None

    def may_reissue(self) -> bool:
        """Whether the retry budget allows trying a call on one more host."""
        with self._lock:
            return self._tokens > self._max_tokens / 2

    def succeeded(self, host: str) -> None:
        """An attempt on ``host`` got an answer: reset its failures, re-admit it, refill the budget."""
        with self._lock:
            state = self._by_name[host]
            state.failures = 0
            if state.ejected_until is not None:
                state.ejected_until = None
                state.ejections = 0
            self._tokens = min(self._max_tokens, self._tokens + self._token_ratio)

    def failed(self, host: str, kind: str, detail: str = "", *, sent: bool = True) -> bool:
        """An attempt on ``host`` got no answer (``kind``: the error class); True when it got ejected.

        An attempt that was never ``sent`` (no connection to the host) counts towards the host's
        ejection but spends no retry token: it cost the host nothing, and gRPC does not throttle
        its own retries of calls that never left the client (gRFC A6, transparent retries).
        """
        with self._lock:
            state = self._by_name[host]
            state.failures += 1
            state.errors[kind] += 1
            state.last_error = detail or kind
            if sent:
                self._tokens = max(0.0, self._tokens - 1)
            if state.ejected_until is None and state.failures >= self._eject_after:
                self._eject(state)
                return True
            return False

    def due(self) -> list[str]:
        """Ejected hosts whose ejection time is up: the ones to probe now."""
        now = self._clock()
        with self._lock:
            return [h.name for h in self._hosts if h.ejected_until is not None and h.ejected_until <= now]

    def probe_failed(self, host: str, kind: str, detail: str = "") -> None:
        """A probe of an ejected host got no answer: eject it again, for twice as long."""
        with self._lock:
            state = self._by_name[host]
            state.errors[kind] += 1
            state.last_error = detail or kind
            if state.ejected_until is not None:
                self._eject(state)

    def health(self) -> list[HostHealth]:
        """Every host's state, in configuration order."""
        now = self._clock()
        with self._lock:
            return [
                HostHealth(
                    host=h.name,
                    label=h.label,
                    ejected=h.ejected_until is not None,
                    consecutive_failures=h.failures,
                    ejected_for_seconds=_left(h, now),
                    errors=dict(h.errors),
                    last_error=h.last_error,
                )
                for h in self._hosts
            ]

    def _eject(self, state: _Host) -> None:
        state.ejections += 1
        seconds = min(self._max, self._base * 2 ** (state.ejections - 1))
        state.ejected_until = self._clock() + seconds


def _left(state: _Host, now: float) -> float:
    return max(0.0, state.ejected_until - now) if state.ejected_until is not None else 0.0


def _due(state: _Host) -> float:
    return state.ejected_until if state.ejected_until is not None else 0.0
