"""Release routing: which TF Serving version label each user request asks for (canary split, shadow).

Ansible writes a small JSON file (``TFSP_ROUTING_FILE``) during a progressive release, atomically
(a new file renamed over the old one):

- ``{}`` or ``{"release": null}``: no release; requests carry no version label (the latest version).
- ``{"release": {"stable_label": "stable", "canary_label": "canary", "canary_percent": 10,
  "shadow_percent": 100, "tolerance": 1e-6}}``: every request asks for a label, the canary for
  ``canary_percent`` % of requests (at random), stable otherwise; ``shadow_percent`` % of the
  requests sent to stable are also sent to the canary in the background and the answers compared
  within ``tolerance`` (optional, relative and absolute; default 1e-6).

Each process looks at the file's (mtime, size, inode) at most once per ``interval`` (1 s, monotonic
clock) and reads it again only when they changed, so a request costs no file access and at most one
``os.stat`` a second. A missing file is no release. A file that cannot be read or is not valid
(bad JSON, unknown keys, a percent outside 0..100, a label not matching ``[A-Za-z0-9_]+``, the same
label twice) is logged once per change and counted; the last good routing stays in force (no
release, at start). Time, stat and read are injectable for the tests.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LABEL = re.compile(r"[A-Za-z0-9_]+")
DEFAULT_TOLERANCE = 1e-6
RELEASE_KEYS = {"stable_label", "canary_label", "canary_percent", "shadow_percent", "tolerance"}


class RoutingError(ValueError):
    """The routing file is not valid; the message says why, in one line."""


@dataclass(frozen=True)
class Release:
    """A release in progress: the two labels, the traffic shares and the shadow comparison's tolerance."""

    stable_label: str
    canary_label: str
    canary_percent: float
    shadow_percent: float
    tolerance: float = DEFAULT_TOLERANCE


def _label(release: dict, key: str) -> str:
    value = release.get(key)
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise RoutingError(f"{key} must be a version label of letters, digits and _, not {value!r}")
    return value


def _percent(release: dict, key: str) -> float:
    value = release.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise RoutingError(f"{key} must be a number from 0 to 100, not {value!r}")
    return float(value)


def parse_routing(text: str | bytes) -> Release | None:
    """The release a routing file describes (None: no release), or RoutingError."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise RoutingError(f"not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise RoutingError(f"must be a JSON object, not a JSON {type(document).__name__}")
    release = document.get("release")
    if release is None:
        return None
    if not isinstance(release, dict):
        raise RoutingError(f"release must be an object or null, not {release!r}")
    unknown = sorted(set(release) - RELEASE_KEYS)
    if unknown:
        raise RoutingError(f"release has unknown keys {', '.join(unknown)}")
    stable, canary = _label(release, "stable_label"), _label(release, "canary_label")
    if stable == canary:
        raise RoutingError(f"canary_label and stable_label are both {stable!r}")
    tolerance = release.get("tolerance", DEFAULT_TOLERANCE)
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise RoutingError(f"tolerance must be a number of at least 0, not {tolerance!r}")
    return Release(
        stable_label=stable,
        canary_label=canary,
        canary_percent=_percent(release, "canary_percent"),
        shadow_percent=_percent(release, "shadow_percent"),
        tolerance=float(tolerance),
    )


class RoutingFile:
    """The release in force for one process, from a routing file checked at most once per ``interval``.

    ``on_change(release)`` hears of every new release in force (None included); ``on_error(message)``
    of every invalid version of the file (once per change of the file).
    """

    def __init__(
        self,
        path: str,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[str], os.stat_result] = os.stat,
        read: Callable[[str], bytes] = lambda path: Path(path).read_bytes(),
        on_change: Callable[[Release | None], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self._interval = interval
        self._clock = clock
        self._stat = stat
        self._read = read
        self._on_change = on_change
        self._on_error = on_error
        self._release: Release | None = None
        self._seen: tuple[int, int, int] | str | None = None  # what the file was at the last check
        self._next_check = -math.inf
        self._lock = threading.Lock()

    def current(self) -> Release | None:
        """The release in force (None: no release). Between checks, no system call at all."""
        if self._clock() < self._next_check:
            return self._release
        with self._lock:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self._interval
                self._check()
        return self._release

    def _check(self) -> None:
        try:
            info = self._stat(self.path)
        except FileNotFoundError:
            self._update("missing", None)
            return
        except OSError as error:
            self._invalid(f"stat failed: {error.strerror or error}", f"stat-error:{error.errno}")
            return
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        if seen == self._seen:
            return
        try:
            release = parse_routing(self._read(self.path))
        except FileNotFoundError:  # replaced between stat and read: read it at the next check
            self._next_check = -math.inf
            return
        except OSError as error:
            self._invalid(f"cannot be read: {error.strerror or error}", seen)
            return
        except RoutingError as error:
            self._invalid(str(error), seen)
            return
        self._update(seen, release)

    def _update(self, seen: tuple[int, int, int] | str, release: Release | None) -> None:
        if seen == self._seen:
            return
        self._seen = seen
        if release != self._release:
            self._release = release
            logger.info("release routing from %s: %s", self.path, _describe(release))
            if self._on_change is not None:
                self._on_change(release)

    def _invalid(self, message: str, seen: tuple[int, int, int] | str) -> None:
        if seen == self._seen:
            return  # logged and counted already
        self._seen = seen
        logger.error(
            "release routing file %s: %s; keeping the routing in force (%s)",
            self.path,
            message,
            _describe(self._release),
        )
        if self._on_error is not None:
            self._on_error(message)


def _describe(release: Release | None) -> str:
    if release is None:
        return "no release"
    return (
        f"{release.canary_percent:g}% to {release.canary_label}, the rest to {release.stable_label}, "
        f"shadowing {release.shadow_percent:g}% of those to {release.canary_label}"
    )
