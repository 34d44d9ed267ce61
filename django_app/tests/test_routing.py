"""The release routing file: parsing and validation, the once-a-second check, keep-last-good.

Time, stat and read are injected: no sleeps; one test uses a real file replaced atomically.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from types import SimpleNamespace

import pytest
from calculator_web.routing import Release, RoutingError, RoutingFile, parse_routing

RELEASE = {
    "stable_label": "stable",
    "canary_label": "canary",
    "canary_percent": 10,
    "shadow_percent": 100,
    "tolerance": 1e-6,
}


def document(**changes) -> str:
    return json.dumps({"release": {**RELEASE, **changes}})


# ------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text", ["{}", '{"release": null}', '{"release": null, "written_by": "ansible"}'])
def test_no_release(text):
    assert parse_routing(text) is None


def test_release():
    assert parse_routing(document()) == Release("stable", "canary", 10.0, 100.0, 1e-6)
    release = parse_routing(json.dumps({"release": {**RELEASE, "canary_percent": 12.5, "tolerance": 0}}))
    assert (release.canary_percent, release.tolerance) == (12.5, 0.0)
    without = {k: v for k, v in RELEASE.items() if k != "tolerance"}
    assert parse_routing(json.dumps({"release": without})).tolerance == 1e-6


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"release": ', "not valid JSON"),
        ("[]", "JSON object"),
        ('{"release": 5}', "object or null"),
        (document(canary_percent=-1), "canary_percent must be a number from 0 to 100"),
        (document(canary_percent=100.5), "canary_percent"),
        (document(shadow_percent="50"), "shadow_percent"),
        (document(shadow_percent=True), "shadow_percent"),
        (document(shadow_percent=None), "shadow_percent"),
        (document(canary_percent=float("nan")), "canary_percent"),
        (document(canary_label="can-ary"), "canary_label must be a version label"),
        (document(canary_label=""), "canary_label"),
        (document(stable_label="stable\n"), "stable_label"),
        (document(stable_label=1), "stable_label"),
        (json.dumps({"release": {k: v for k, v in RELEASE.items() if k != "stable_label"}}), "stable_label"),
        (document(canary_label="stable"), "both 'stable'"),
        (document(tolerance=-1e-6), "tolerance"),
        (document(tolerance=float("inf")), "tolerance"),
        (document(canary_precent=5), "unknown keys canary_precent"),
    ],
)
def test_invalid(text, words):
    with pytest.raises(RoutingError) as error:
        parse_routing(text)
    assert words in str(error.value)


# ------------------------------------------------------------------------------------- the file


class FakeFile:
    """A routing file on a fake clock: ``write`` changes its stat key, ``remove`` makes it missing."""

    def __init__(self) -> None:
        self.now = 100.0
        self.text: str | None = None
        self.version = 0
        self.stat_error: OSError | None = None
        self.stats = 0
        self.reads = 0
        self.changes: list[Release | None] = []
        self.errors: list[str] = []

    def write(self, text: str) -> None:
        self.text = text
        self.version += 1

    def remove(self) -> None:
        self.text = None

    def stat(self, path: str):
        self.stats += 1
        if self.stat_error is not None:
            raise self.stat_error
        if self.text is None:
            raise FileNotFoundError(path)
        return SimpleNamespace(st_mtime_ns=self.version, st_size=len(self.text), st_ino=7)

    def read(self, path: str) -> bytes:
        self.reads += 1
        if self.text is None:
            raise FileNotFoundError(path)
        return self.text.encode()

    def routing(self) -> RoutingFile:
        return RoutingFile(
            "/etc/tfsp/routing.json",
            clock=lambda: self.now,
            stat=self.stat,
            read=self.read,
            on_change=self.changes.append,
            on_error=self.errors.append,
        )


@pytest.fixture
def fake() -> FakeFile:
    return FakeFile()


def test_checked_at_most_once_a_second_and_read_only_when_changed(fake):
    fake.write(document())
    routing = fake.routing()
    for i in range(100):  # 100 requests within 0.99 s
        fake.now = 100 + i * 0.01
        assert routing.current().canary_label == "canary"
    assert (fake.stats, fake.reads) == (1, 1)
    fake.now = 101.0
    routing.current()
    assert (fake.stats, fake.reads) == (2, 1)  # stat again, unchanged: not read again
    fake.write(document(canary_percent=50))
    fake.now = 101.9
    assert routing.current().canary_percent == 10  # not looked at again yet
    fake.now = 102.0
    assert routing.current().canary_percent == 50
    assert (fake.stats, fake.reads) == (3, 2)
    assert [r.canary_percent if r else None for r in fake.changes] == [10, 50]


def test_missing_file_is_no_release_and_not_an_error(fake):
    routing = fake.routing()
    assert routing.current() is None
    fake.write(document())
    fake.now += 1
    assert routing.current() is not None
    fake.remove()
    fake.now += 1
    assert routing.current() is None
    assert fake.errors == []
    assert fake.changes == [parse_routing(document()), None]


def test_invalid_file_keeps_the_last_good_routing_and_is_reported_once_per_change(fake, caplog):
    fake.write(document(canary_percent=20))
    routing = fake.routing()
    assert routing.current().canary_percent == 20
    fake.write(document(canary_percent=120))
    with caplog.at_level(logging.ERROR, logger="calculator_web.routing"):
        for _ in range(5):
            fake.now += 1
            assert routing.current().canary_percent == 20
    assert len(fake.errors) == 1
    assert "canary_percent must be a number from 0 to 100" in fake.errors[0]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping the routing in force (20% to canary" in errors[0]
    fake.write("{not json")  # another bad version: reported again
    fake.now += 1
    assert routing.current().canary_percent == 20
    assert len(fake.errors) == 2
    fake.write(document(canary_percent=30))
    fake.now += 1
    assert routing.current().canary_percent == 30


def test_invalid_file_at_start_is_no_release(fake):
    fake.write(document(canary_label="canary", stable_label="canary"))
    routing = fake.routing()
    assert routing.current() is None
    assert len(fake.errors) == 1


def test_unreadable_file_keeps_the_last_good_routing(fake):
    fake.write(document())
    routing = fake.routing()
    assert routing.current() is not None
    fake.stat_error = PermissionError(errno.EACCES, "Permission denied")
    for _ in range(3):
        fake.now += 1
        assert routing.current() == parse_routing(document())
    assert fake.errors == ["stat failed: Permission denied"]


def test_real_file_replaced_atomically(tmp_path):
    path = tmp_path / "routing.json"
    now = [0.0]
    routing = RoutingFile(str(path), clock=lambda: now[0])
    assert routing.current() is None
    for percent in (10, 25.5):
        staging = tmp_path / "routing.json.tmp"
        staging.write_text(document(canary_percent=percent))
        os.replace(staging, path)
        now[0] += 1
        assert routing.current().canary_percent == percent
    path.write_text('{"release": null}')
    now[0] += 1
    assert routing.current() is None
