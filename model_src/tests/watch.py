"""A watcher that lists a model directory in a tight loop, as a polling TF Serving would."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from model_src.signatures import WARMUP_RELATIVE_PATH


@dataclass
class Observations:
    """What the watcher saw: every name, integer names seen incomplete, and each scan's versions."""

    names: set[str] = field(default_factory=set)
    incomplete_versions: set[str] = field(default_factory=set)
    version_sets: list[frozenset[str]] = field(default_factory=list)
    scans: int = 0


class VersionWatcher(threading.Thread):
    """Scan model_dir until stopped; use as a context manager around an export."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(daemon=True)
        self.model_dir = model_dir
        self.seen = Observations()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._scan()

    def _scan(self) -> None:
        try:
            names = os.listdir(self.model_dir)
        except FileNotFoundError:
            return
        versions = frozenset(name for name in names if name.isdigit())
        for name in versions:
            version_dir = self.model_dir / name
            complete = (version_dir / "saved_model.pb").is_file() and (
                version_dir / WARMUP_RELATIVE_PATH
            ).is_file()
            if not complete:
                self.seen.incomplete_versions.add(name)
        self.seen.names.update(names)
        if not self.seen.version_sets or self.seen.version_sets[-1] != versions:
            self.seen.version_sets.append(versions)
        self.seen.scans += 1

    def __enter__(self) -> VersionWatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_event.set()
        self.join()
        # The thread may not get the GIL between the export's last rename and the stop:
        # one more scan, after it has ended, records the final state every time.
        self._scan()
