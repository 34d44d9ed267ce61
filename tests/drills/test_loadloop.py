"""The load loop counts every kind of failure, against a small local HTTP server with set faults."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import loadloop
import pytest
from heartbeat import held_up_ms
from loadloop import LoadLoop, LoadReport, Record, check_answer, expected_result
from pressure import PressureSampler


class _Calculator(BaseHTTPRequestHandler):
    """Answers like the web tier; ``server.fault`` makes it misbehave on every n-th request."""

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_POST(self) -> None:
        server = self.server
        with server.lock:
            server.count += 1
            count = server.count
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        result = expected_result(payload["operation"], payload["a"], payload["b"])
        fault = server.fault if count % server.every == 0 else None
        # The web tier's answer says how long its TF Serving calls took: here, the fault's sleep.
        upstream = 300.0 if fault == "slow" else 1.0
        body = {
            "result": result,
            "model_version": 1,
            "served_by": f"tfs{count % 2 + 1}:8500",
            "elapsed_ms": upstream,
        }
        status, text = 200, json.dumps(body)
        if fault == "503":
            status, text = 503, json.dumps({"error": "TF Serving is unavailable"})
        elif fault == "not-json":
            text = "<html>oops</html>"
        elif fault == "wrong":
            text = json.dumps(dict(body, result=result + 1))
        elif fault == "no-result":
            text = json.dumps({"model_version": 1, "served_by": "tfs1:8500"})
        elif fault == "slow":
            time.sleep(0.3)
        encoded = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


@pytest.fixture
def site() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Calculator)
    server.lock, server.count, server.fault, server.every = threading.Lock(), 0, None, 10
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run(urls: list[str], seconds: float = 0.6, **options) -> loadloop.LoadReport:
    with LoadLoop(urls, clients_per_site=2, pace_seconds=0.005, **options) as load:
        load.mark("start")
        threading.Event().wait(seconds)
        load.mark("end")
    return load.report


def test_a_healthy_site_gives_a_clean_report(site):
    report = _run([site.url])
    report.assert_clean(min_requests=20, serving_hosts={"tfs1:8500", "tfs2:8500"}, window=("start", "end"))
    assert report.versions == {1: len(report.records)}
    assert {record.client for record in report.records} == {f"{site.url}#0", f"{site.url}#1"}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("503", "HTTP 503"),
        ("not-json", "not JSON"),
        ("wrong", "wrong answer"),
        ("no-result", "without a result"),
    ],
)
def test_every_kind_of_bad_answer_is_a_failure(site, fault, reason):
    site.fault = fault
    report = _run([site.url])
    assert report.failures
    assert all(reason in record.error for record in report.failures)
    # Roughly one in ten: the loop went on after each failure.
    assert len(report.records) > 5 * len(report.failures)
    with pytest.raises(AssertionError, match=reason):
        report.assert_clean(min_requests=1)


def test_a_site_that_does_not_answer_is_a_failure(site):
    # A closed port: connection refused on every request of its clients.
    dead = "http://127.0.0.1:9"
    with pytest.raises(AssertionError, match="ConnectionError"):
        _run([site.url, dead], start_timeout=5).assert_clean(min_requests=1)


def test_a_client_thread_that_dies_fails_the_drill(site, monkeypatch):
    calls = {"n": 0}
    real = loadloop.check_answer

    def explode_on_the_fifth(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("parser bug")
        return real(*args)

    monkeypatch.setattr(loadloop, "check_answer", explode_on_the_fifth)
    report = _run([site.url])
    assert any("died: RuntimeError('parser bug')" in error for error in report.thread_errors)
    with pytest.raises(AssertionError, match="parser bug"):
        report.assert_clean(min_requests=1)


def test_a_client_that_stops_early_fails_the_drill(site):
    report = _run([site.url], seconds=0.5, max_seconds=0.1)
    assert any("stopped before the drill ended" in error for error in report.thread_errors)


def test_too_little_load_and_missing_hosts_are_reported(site):
    report = _run([site.url], seconds=0.3)
    found = report.problems(
        min_requests=10**6,
        serving_hosts={"tfs1:8500", "tfs3:8500"},
        window=("start", "end"),
        min_in_window=10**6,
        versions={2},
    )
    assert any("fewer than 1000000" in line and "requests ran" in line for line in found)
    assert "serving host tfs3:8500 answered no request" in found
    assert not any("tfs1:8500" in line for line in found)
    assert any("between start and end" in line for line in found)
    assert any("unexpected model versions [1]" in line for line in found)


def test_slow_requests_are_reported(site):
    report = _run([site.url], seconds=0.3)
    assert report.problems(min_requests=1, max_latency_ms=report.slowest_ms + 1) == []
    assert report.problems(min_requests=1, max_latency_ms=0)


def test_a_slow_answer_counts_in_full(site, tmp_path):
    # The server takes 300 ms over every tenth request: the load loop waits on the network, its
    # heartbeat keeps ticking, and the bound sees the whole wait. (No PSI figures here: what this
    # machine's other work costs is the next tests' subject, not this one's.)
    site.fault = "slow"
    report = _run([site.url], seconds=1.0, pressure=PressureSampler(directory=tmp_path))
    slow = [record for record in report.records if record.elapsed_ms >= 300]
    assert slow
    assert all(report.held_up_ms(record) < 100 for record in slow)
    assert {record.upstream_ms for record in slow} == {300.0}
    found = report.problems(min_requests=1, max_latency_ms=250)
    slow_lines = [line for line in found if "> 250 ms" in line]
    assert slow_lines
    # Each slow request is listed with what explains it: here, the time in the TF Serving calls.
    assert all("300 ms in the web tier's TF Serving calls" in line for line in slow_lines)
    assert all("requests of other clients meanwhile" in line and "machine: " in line for line in slow_lines)
    # The web tier's own figure is judged too, and with nothing taken off.
    upstream_lines = [
        line for line in report.problems(min_requests=1, max_upstream_ms=250) if "> 250" in line
    ]
    assert len(upstream_lines) == min(len(slow), 10)
    assert report.problems(min_requests=1, max_upstream_ms=300) == []


def _record(started: float, elapsed_ms: float, upstream_ms: float | None = 5.0) -> Record:
    return Record("s#0", "s", started, 0.0, elapsed_ms, "", 200, "tfs1:8500", 1, upstream_ms)


def _psi(*points: tuple[float, int]) -> list[tuple[float, dict[str, int]]]:
    return [(moment, {"cpu.some": micros, "io.full": 0}) for moment, micros in points]


def test_the_time_the_machine_kept_a_core_from_the_stack_is_not_the_stacks():
    # A 600 ms request during which some task waited 400 ms for a core: 200 ms are the stack's.
    busy = LoadReport(("s",), 1, [_record(10.0, 600)], pressure=_psi((9.8, 0), (10.0, 0), (10.6, 400_000)))
    assert busy.machine_ms(busy.records[0]) == pytest.approx(400)
    assert busy.own_ms(busy.records[0]) == pytest.approx(200)
    assert busy.problems(min_requests=1, max_latency_ms=500) == []
    # The same request on a quiet machine is over the bound...
    quiet = LoadReport(("s",), 1, [_record(10.0, 600)], pressure=_psi((10.0, 0), (10.6, 6_000)))
    [line] = quiet.problems(min_requests=1, max_latency_ms=500)
    assert "600 ms (less 0 the test process held up, 6 the machine's tasks waiting for a core: 594)" in line
    # ... and so is a wait far longer than anything the machine took (a stall on a dead host).
    long = LoadReport(("s",), 1, [_record(10.0, 2000)], pressure=_psi((9.9, 0), (12.1, 1_000_000)))
    assert long.problems(min_requests=1, max_latency_ms=500)
    # Without PSI figures, nothing is taken off.
    bare = LoadReport(("s",), 1, [_record(10.0, 600)])
    assert bare.machine_ms(bare.records[0]) == 0
    assert bare.problems(min_requests=1, max_latency_ms=500)


def test_the_web_tiers_tf_serving_time_is_judged_with_nothing_taken_off():
    records = [_record(10.0, 600, upstream_ms=520), _record(11.0, 50, upstream_ms=None), _record(12.0, 9)]
    busy = LoadReport(("s",), 1, records, pressure=_psi((9.9, 0), (12.1, 2_000_000)))
    found = busy.problems(min_requests=1, max_upstream_ms=500)
    assert any("520 ms in the web tier's TF Serving calls > 500 ms" in line for line in found)
    assert "1 answers without elapsed_ms: their TF Serving time is unknown" in found
    assert len(found) == 2


def test_moments_the_test_process_was_held_up_are_not_the_stacks(site):
    # The whole test process stopped for 0.4 s (SIGSTOP from a child, then SIGCONT): every request
    # in flight looks 0.4 s slower, and none of that is the stack's doing.
    pid = os.getpid()
    # No pause between requests, so that some are in flight when the process stops.
    with LoadLoop([site.url], clients_per_site=2, pace_seconds=0) as load:
        time.sleep(0.2)
        subprocess.run(["sh", "-c", f"kill -STOP {pid}; sleep 0.4; kill -CONT {pid}"], check=True)
        time.sleep(0.3)
    report = load.report
    assert report.slowest_ms > 300
    assert max(end - start for start, end in report.stalls) > 0.3
    assert report.problems(min_requests=1, max_latency_ms=200) == [], report.summary()
    assert "test process held up" in report.summary()


def test_held_up_time_is_the_overlap_with_each_stall():
    stalls = [(10.0, 10.2), (11.0, 11.5)]
    assert held_up_ms(stalls, 9.0, 500) == 0
    assert held_up_ms(stalls, 9.9, 200) == pytest.approx(100)
    assert held_up_ms(stalls, 10.05, 100) == pytest.approx(100)
    assert held_up_ms(stalls, 10.1, 1500) == pytest.approx(100 + 500)


def test_marks_never_set_are_a_problem(site):
    report = _run([site.url], seconds=0.2)
    assert report.problems(min_requests=1, window=("fault-start", "fault-end")) == [
        "marks never set: ['fault-start', 'fault-end']"
    ]


def test_upstream_time_is_read_from_the_answer_when_it_has_one():
    assert loadloop.upstream_ms(json.dumps({"result": 1, "elapsed_ms": 2.5})) == 2.5
    assert loadloop.upstream_ms(json.dumps({"result": 1})) is None
    assert loadloop.upstream_ms(json.dumps({"elapsed_ms": "2"})) is None
    assert loadloop.upstream_ms(json.dumps({"elapsed_ms": True})) is None
    assert loadloop.upstream_ms("[1]") is None
    assert loadloop.upstream_ms("<html>") is None


def test_check_answer_reads_a_good_answer():
    payload = {"operation": "multiply", "a": 6, "b": 7}
    body = json.dumps({"result": 42.0, "model_version": "3", "served_by": "h:8500"})
    assert check_answer(payload, 200, body) == ("", "h:8500", 3)
