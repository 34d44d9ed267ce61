"""The load loop every drill runs under: several clients through every web host, counting everything.

A drill (a rollout, a config change, a fault on a serving host) is only as good as the load that
watches it. This loop:

- runs ``clients_per_site`` threads per site URL (one per web host), each with its own keep-alive
  session, sending ``POST /api/v1/predict`` with operands that change on every request, paced;
- checks every answer: HTTP 200, a JSON body, ``result`` equal to the arithmetic done here,
  ``model_version`` and ``served_by`` present; anything else (another status, a body that is not
  JSON, a wrong or missing result, a timeout, a connection error) is a failure with its reason;
- records each request: which client and site, when it started (monotonic and wall clock), how
  long it took, and which serving host and model version answered;
- notices a client thread that died or stopped before it was told to, and counts that as a
  failure of the drill, not as silence.

``mark(name)`` stamps a moment (the fault starts, the fault ends) so a drill can ask that the load
actually ran across its fault window. Two latency bounds judge how the stack routed around a fault:

- ``max_upstream_ms`` bounds the web tier's own figure for its TF Serving calls (each answer's
  ``elapsed_ms``, failover included), less nothing: it is where waiting on a faulty serving host
  shows, and the test process's or the controller's hold-ups never enter it;
- ``max_latency_ms`` bounds each request's time end to end less what the machine took from it:
  every test host and the load loop share the machine's two cores, so a request is also slowed by
  work that on real hardware runs elsewhere (a host container rebooting, the drill's own docker
  commands). What is taken off is the larger of the moments the test process itself was held up
  (``heartbeat``) and how long, while it ran, some task on the machine waited for a core (PSI's
  ``cpu.some``, ``pressure``): an upper bound on the request's own wait for a core.

A slow request is listed with what explains it: its TF Serving time, the other clients' requests at
the same moment, and the machine's stall figures meanwhile. ``LoadReport.problems`` lists
everything wrong in one go; ``assert_clean`` fails with that list and a summary.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests
from heartbeat import Heartbeat, held_up_ms
from pressure import PressureSampler, describe, during

OPERATIONS = ("add", "subtract", "multiply")
PREDICT_PATH = "/api/v1/predict"


def expected_result(operation: str, a: float, b: float) -> float:
    """What the calculator must answer (small integers: exact in float32)."""
    if operation == "add":
        return a + b
    if operation == "subtract":
        return a - b
    if operation == "multiply":
        return a * b
    raise ValueError(f"unknown operation {operation!r}")


def request_payload(client_index: int, sequence: int) -> dict:
    """The n-th request of a client: operations in turn, operands that differ every time."""
    return {
        "operation": OPERATIONS[sequence % len(OPERATIONS)],
        "a": sequence % 997,
        "b": client_index * 7 + 1,
    }


@dataclass(frozen=True)
class Record:
    """One request as the client saw it."""

    client: str
    site: str
    started: float  # time.monotonic()
    wall: float  # time.time(), for reading beside logs
    elapsed_ms: float
    error: str  # empty when the answer was right
    status: int | None = None
    served_by: str | None = None
    model_version: int | None = None
    #: The answer's ``elapsed_ms``: the web tier's time in its TF Serving calls, failover included.
    upstream_ms: float | None = None

    @property
    def ok(self) -> bool:
        return not self.error


def check_answer(payload: dict, status: int, body: str) -> tuple[str, str | None, int | None]:
    """(error or "", served_by, model_version) of one answer."""
    if status != 200:
        return f"HTTP {status}: {body[:200]}", None, None
    try:
        answer = json.loads(body)
    except ValueError:
        return f"HTTP 200 with a body that is not JSON: {body[:200]!r}", None, None
    if not isinstance(answer, dict):
        return f"HTTP 200 with JSON that is not an object: {body[:200]!r}", None, None
    served_by = answer.get("served_by")
    version = answer.get("model_version")
    try:
        version = int(version) if version is not None else None
    except (TypeError, ValueError):
        return f"model_version is not an integer: {version!r}", served_by, None
    if "result" not in answer:
        return f"HTTP 200 without a result: {body[:200]!r}", served_by, version
    want = expected_result(payload["operation"], payload["a"], payload["b"])
    if answer["result"] != want:
        return f"wrong answer for {payload}: {answer['result']!r}, expected {want!r}", served_by, version
    if not served_by:
        return f"answer without served_by: {body[:200]!r}", None, version
    return "", served_by, version


def upstream_ms(body: str) -> float | None:
    """The ``elapsed_ms`` of an answer's JSON body, if it has one."""
    try:
        value = json.loads(body).get("elapsed_ms")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class LoadReport:
    """What a load loop saw, and the checks a drill makes of it."""

    sites: tuple[str, ...]
    clients: int
    records: list[Record]
    marks: dict[str, float] = field(default_factory=dict)
    thread_errors: list[str] = field(default_factory=list)
    #: (start, end) of each moment the load loop's own process was held up (time.monotonic()).
    stalls: list[tuple[float, float]] = field(default_factory=list)
    #: (time.monotonic(), PSI totals) samples through the run (``pressure``); none without PSI.
    pressure: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def held_up_ms(self, record: Record) -> float:
        """How long the test process was held up while ``record`` ran (not the stack's doing)."""
        return held_up_ms(self.stalls, record.started, record.elapsed_ms)

    @property
    def held_up_total_ms(self) -> float:
        """How long the test process was held up in all during the run."""
        return sum(end - start for start, end in self.stalls) * 1000

    def machine_ms(self, record: Record) -> float:
        """How long some task on the machine waited for a core while ``record`` ran (PSI cpu.some)."""
        end = record.started + record.elapsed_ms / 1000
        growth = during(self.pressure, record.started, end, keys=("cpu.some",))
        return min(record.elapsed_ms, growth.get("cpu.some", 0.0))

    def own_ms(self, record: Record) -> float:
        """A request's time less what the machine took from it: what ``max_latency_ms`` judges."""
        return record.elapsed_ms - max(self.held_up_ms(record), self.machine_ms(record))

    @property
    def failures(self) -> list[Record]:
        return [record for record in self.records if not record.ok]

    @property
    def slowest_ms(self) -> float:
        return max((record.elapsed_ms for record in self.records), default=0.0)

    @property
    def served_by(self) -> Counter:
        return Counter(record.served_by for record in self.records if record.ok)

    @property
    def versions(self) -> Counter:
        return Counter(record.model_version for record in self.records if record.ok)

    def window(self, start: str, end: str) -> list[Record]:
        """The requests that started between two marks."""
        begin, finish = self.marks[start], self.marks[end]
        return [record for record in self.records if begin <= record.started <= finish]

    def summary(self) -> str:
        by_site = Counter(record.site for record in self.records)
        return (
            f"{len(self.records)} requests from {self.clients} clients, {len(self.failures)} failed, "
            f"slowest {self.slowest_ms:.0f} ms; test process held up "
            f"{len(self.stalls)} times, {self.held_up_total_ms:.0f} ms in all; per site {dict(by_site)}; "
            f"served by {dict(self.served_by)}; versions {dict(self.versions)}"
        )

    def problems(
        self,
        *,
        min_requests: int,
        serving_hosts: Iterable[str] = (),
        max_latency_ms: float | None = None,
        max_upstream_ms: float | None = None,
        window: tuple[str, str] | None = None,
        min_in_window: int = 0,
        versions: Iterable[int] | None = None,
    ) -> list[str]:
        """Everything that makes this run not a clean pass, one line each."""
        found = [f"client thread: {error}" for error in self.thread_errors]
        found += [f"{r.client} at {r.wall:.3f}: {r.error}" for r in self.failures[:20]]
        if len(self.failures) > 20:
            found.append(f"... and {len(self.failures) - 20} more failed requests")
        if len(self.records) < min_requests:
            found.append(f"only {len(self.records)} requests ran, fewer than {min_requests}")
        for site in self.sites:
            if not any(record.site == site and record.ok for record in self.records):
                found.append(f"no successful request through {site}")
        for host in serving_hosts:
            if self.served_by[host] == 0:
                found.append(f"serving host {host} answered no request")
        if max_latency_ms is not None:
            slow = [r for r in self.records if self.own_ms(r) > max_latency_ms]
            found += [
                f"{r.client} at {r.wall:.3f}: {r.elapsed_ms:.0f} ms (less {self.held_up_ms(r):.0f} the test "
                f"process held up, {self.machine_ms(r):.0f} the machine's tasks waiting for a core: "
                f"{self.own_ms(r):.0f}) > {max_latency_ms:.0f} ms, served by {r.served_by or '-'}; "
                + self.explain(r)
                for r in slow[:10]
            ]
        if max_upstream_ms is not None:
            answered = [r for r in self.records if r.ok]
            unknown = [r for r in answered if r.upstream_ms is None]
            if unknown:
                found.append(f"{len(unknown)} answers without elapsed_ms: their TF Serving time is unknown")
            slow = [r for r in answered if r.upstream_ms is not None and r.upstream_ms > max_upstream_ms]
            found += [
                f"{r.client} at {r.wall:.3f}: {r.upstream_ms:.0f} ms in the web tier's TF Serving calls "
                f"> {max_upstream_ms:.0f} ms, served by {r.served_by or '-'}; " + self.explain(r)
                for r in slow[:10]
            ]
        if window is not None:
            missing = [mark for mark in window if mark not in self.marks]
            if missing:
                found.append(f"marks never set: {missing}")
            elif len(self.window(*window)) < min_in_window:
                found.append(
                    f"only {len(self.window(*window))} requests between {window[0]} and {window[1]}, "
                    f"fewer than {min_in_window}"
                )
        if versions is not None:
            unexpected = set(self.versions) - set(versions)
            if unexpected:
                found.append(f"answers from unexpected model versions {sorted(unexpected, key=str)}")
        return found

    def explain(self, record: Record) -> str:
        """What was going on while ``record`` ran: its TF Serving time, the others, the machine."""
        end = record.started + record.elapsed_ms / 1000
        others = [
            r
            for r in self.records
            if r.client != record.client
            and r.started < end
            and r.started + r.elapsed_ms / 1000 > record.started
        ]
        upstream = "?" if record.upstream_ms is None else f"{record.upstream_ms:.0f}"
        return (
            f"{upstream} ms in the web tier's TF Serving calls; "
            f"{len(others)} requests of other clients meanwhile, slowest "
            f"{max((r.elapsed_ms for r in others), default=0):.0f} ms; "
            f"machine: {describe(during(self.pressure, record.started, end))}"
        )

    def assert_clean(self, **checks) -> None:
        """Fail with every problem and the summary unless the run was clean (see ``problems``)."""
        found = self.problems(**checks)
        assert not found, "load loop: " + self.summary() + "\n" + "\n".join(found)


class LoadLoop:
    """Paced clients through every site until stopped; use as a context manager."""

    def __init__(
        self,
        sites: Iterable[str],
        *,
        clients_per_site: int = 2,
        pace_seconds: float = 0.02,
        request_timeout: float = 10.0,
        max_seconds: float = 1800.0,
        verify: bool | str = False,
        start_timeout: float = 30.0,
        pressure: PressureSampler | None = None,
    ) -> None:
        self.sites = tuple(sites)
        if not self.sites or clients_per_site < 1:
            raise ValueError("a load loop needs at least one site and one client per site")
        self.clients_per_site = clients_per_site
        self.pace_seconds = pace_seconds
        self.request_timeout = request_timeout
        self.max_seconds = max_seconds
        self.verify = verify
        self.start_timeout = start_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._thread_errors: list[str] = []
        self._marks: dict[str, float] = {}
        self._started: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._heartbeat = Heartbeat()
        # The machine's PSI figures (a sampler of another directory in the unit tests).
        self._pressure = pressure or PressureSampler()
        self.report: LoadReport | None = None

    def __enter__(self) -> LoadLoop:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def mark(self, name: str) -> None:
        """Stamp a moment of the drill (``window=(start, end)`` of ``problems`` reads two)."""
        with self._lock:
            self._marks[name] = time.monotonic()

    def start(self) -> None:
        """Start every client and return once each has had an answer (right or wrong)."""
        self._heartbeat.start()
        self._pressure.start()
        for index, (site, number) in enumerate(itertools.product(self.sites, range(self.clients_per_site))):
            name = f"{site}#{number}"
            self._started[name] = threading.Event()
            thread = threading.Thread(target=self._guarded, args=(name, site, index), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        deadline = time.monotonic() + self.start_timeout
        for name, started in self._started.items():
            if not started.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise AssertionError(f"load loop: client {name} had no answer within {self.start_timeout} s")

    def stop(self) -> LoadReport:
        """Stop the clients, wait for them, and build the report (also kept as ``self.report``)."""
        if self.report is not None:
            return self.report
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.request_timeout + 5)
            if thread.is_alive():
                self._thread_errors.append(f"{thread.name} did not stop within {self.request_timeout + 5} s")
        self._heartbeat.stop()
        self._pressure.stop()
        with self._lock:
            self.report = LoadReport(
                sites=self.sites,
                clients=len(self._threads),
                records=sorted(self._records, key=lambda record: record.started),
                marks=dict(self._marks),
                thread_errors=list(self._thread_errors),
                stalls=list(self._heartbeat.stalls),
                pressure=list(self._pressure.samples),
            )
        return self.report

    def _guarded(self, name: str, site: str, index: int) -> None:
        """A client's loop; its death or an early end is recorded, never lost."""
        try:
            self._client(name, site, index)
        except BaseException as error:
            with self._lock:
                self._thread_errors.append(f"{name} died: {error!r}")
        else:
            if not self._stop.is_set():
                with self._lock:
                    self._thread_errors.append(
                        f"{name} stopped before the drill ended ({self.max_seconds} s cap)"
                    )
        finally:
            self._started[name].set()

    def _client(self, name: str, site: str, index: int) -> None:
        session = requests.Session()
        url = site.rstrip("/") + PREDICT_PATH
        began = time.monotonic()
        for sequence in itertools.count():
            if self._stop.is_set() or time.monotonic() - began > self.max_seconds:
                return
            self._records_append(self._one(session, name, site, url, request_payload(index, sequence)))
            self._started[name].set()
            self._stop.wait(self.pace_seconds)

    def _one(self, session: requests.Session, name: str, site: str, url: str, payload: dict) -> Record:
        started, wall = time.monotonic(), time.time()
        status, upstream = None, None
        try:
            response = session.post(url, json=payload, timeout=self.request_timeout, verify=self.verify)
            status = response.status_code
            error, served_by, version = check_answer(payload, status, response.text)
            upstream = upstream_ms(response.text)
        except requests.RequestException as exception:
            error, served_by, version = f"{type(exception).__name__}: {exception}", None, None
        elapsed_ms = (time.monotonic() - started) * 1000
        return Record(name, site, started, wall, elapsed_ms, error, status, served_by, version, upstream)

    def _records_append(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)
