"""Fault drills on the client against two real TF Serving stand-ins, under a steady load.

A frozen host (``docker pause``: the kernel still accepts TCP, the server never answers) and a host
that accepts connections but never speaks (the ``silent_server``) must cost no failed call and no
call slower than 500 ms; the frozen host is ejected while frozen and serves again once thawed.

A call's time does not count the moments the test process itself could not run: on a loaded
two-core CI machine the whole process was once held up for about 0.9 s, four calls at once. The
drills' heartbeat (``tests/drills/heartbeat.py``, shared with the full-stack drills' load loop)
finds those moments and they are taken off each call they overlap. A client waiting on a frozen
host leaves the heartbeat ticking (gRPC waits without the GIL), so such a wait still counts in full.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tfsp_client import ClientConfig, ServingError, TFServingClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "drills"))
from heartbeat import Heartbeat  # standard library only, from the drills

pytestmark = pytest.mark.docker

MAX_LATENCY_MS = 500
THREADS = 4


@dataclass
class Load:
    """Calls made by a few threads: (time.monotonic() at start, latency ms, host or None, error or None)."""

    client: TFServingClient
    calls: list[tuple[float, float, str | None, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    started: float = field(default_factory=time.monotonic)

    def run(self) -> None:
        while not self.stop.is_set():
            begin = time.monotonic()
            try:
                answer = self.client.predict("add", {"a": [1.0], "b": [2.0]})
                host, error = answer.host, None
                assert answer.values == [3.0]
            except ServingError as exc:
                host, error = None, f"{type(exc).__name__}: {exc}"
            self.calls.append((begin, (time.monotonic() - begin) * 1000, host, error))
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self.heartbeat.start()
        self.threads = [threading.Thread(target=self.run) for _ in range(THREADS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.heartbeat.stop()

    def failures(self) -> list[str]:
        return [c[3] for c in self.calls if c[3] is not None]

    def slowest_ms(self) -> float:
        """The slowest call's own time: its latency less the moments the process was held up."""
        return max(c[1] - self.heartbeat.held_up_ms(c[0], c[1]) for c in self.calls)

    def slowest(self) -> list[str]:
        """The five slowest calls, for a failure's message."""
        calls = sorted(self.calls, key=lambda c: c[1])[-5:]
        return [
            f"at {begin - self.started:.2f} s: {ms:.0f} ms, "
            f"{self.heartbeat.held_up_ms(begin, ms):.0f} held up, {host or error}"
            for begin, ms, host, error in calls
        ]


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=60)


def test_frozen_host_costs_no_failure_and_no_slow_call(running_standins):
    frozen, alive = running_standins
    client = TFServingClient(ClientConfig(targets=(frozen.grpc_target, alive.grpc_target)))
    try:
        with Load(client) as load:
            time.sleep(1)
            docker("pause", frozen.name)
            try:
                time.sleep(6)
                assert client.host_health()[0].ejected, "the frozen host was not ejected"
            finally:
                docker("unpause", frozen.name)
            thawed_at = len(load.calls)
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and frozen.grpc_target not in {
                c[2] for c in load.calls[thawed_at:]
            }:
                time.sleep(0.2)
        assert load.failures() == []
        assert load.slowest_ms() < MAX_LATENCY_MS, load.slowest()
        assert len(load.calls) > 200
        assert frozen.grpc_target in {c[2] for c in load.calls[thawed_at:]}, (
            "the thawed host never served again"
        )
        assert not client.host_health()[0].ejected
    finally:
        client.close()


def test_host_that_accepts_but_never_answers_costs_no_failure(running_standins, silent_server):
    client = TFServingClient(ClientConfig(targets=(silent_server, running_standins[0].grpc_target)))
    try:
        with Load(client) as load:
            time.sleep(3)
        assert load.failures() == []
        assert load.slowest_ms() < MAX_LATENCY_MS, load.slowest()
        assert {c[2] for c in load.calls} == {running_standins[0].grpc_target}
        silent = client.host_health()[0]
        assert silent.ejected
        assert silent.errors.get("UpstreamTimeout", 0) >= 1
    finally:
        client.close()


def test_status_queries_do_not_wait_on_a_frozen_host(running_standins, client, settings):
    frozen, alive = running_standins
    settings.TFSP_TF_SERVING_TARGETS = [frozen.grpc_target, alive.grpc_target]
    settings.TFSP_TF_SERVING_PROTOCOL = "grpc"
    assert client.get("/readyz").status_code == 200
    docker("pause", frozen.name)
    try:
        for path in ("/readyz", "/status", "/readyz"):
            started = time.monotonic()
            response = client.get(path)
            assert response.status_code == 200
            assert time.monotonic() - started < 1.5  # one status timeout (0.5 s), plus metadata
        body = client.get("/readyz").json()
        assert [h["ejected"] for h in body["hosts"]] == [True, False]
    finally:
        docker("unpause", frozen.name)
