"""The client's routing rules with a fake clock and a fake transport: no sleeps, no servers.

A "hung" host in the fake transport uses up the attempt's whole timeout on the fake clock and then
raises UpstreamTimeout, exactly what a frozen TF Serving does to a real call.
"""

from __future__ import annotations

import threading
import time

import pytest
from tfsp_client import (
    ClientConfig,
    TFServingClient,
    UnknownVersionLabel,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tfsp_client.config import ConfigError
from tfsp_client.policy import HostPool
from tfsp_client.transport import Transport

A, B = "tfs-a:8500", "tfs-b:8500"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTransport(Transport):
    """Each host is "ok" (answers in 5 ms), "slow" (1 s), "hung", "refused" or "rejects".

    ``labels[host]``: the version labels the host knows (others get TF Serving's INVALID_ARGUMENT).
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.mode = {A: "ok", B: "ok"}
        self.labels = {A: {"stable", "canary"}, B: {"stable", "canary"}}
        self.attempts: list[tuple[str, float]] = []
        self.asked_labels: list[str | None] = []
        self.probes: list[str] = []

    def _attempt(self, host: str, timeout: float, version_label: str | None = None):
        self.attempts.append((host, timeout))
        self.asked_labels.append(version_label)
        mode = self.mode[host]
        if mode == "hung":
            self.clock.advance(timeout)
            raise UpstreamTimeout("DEADLINE_EXCEEDED", host)
        if mode == "refused":
            raise UpstreamUnavailable("UNAVAILABLE: connection refused", host)
        if mode == "rejects":
            raise UpstreamRejected("INVALID_ARGUMENT", host)
        if mode == "slow":  # answers after 1 s
            self.clock.advance(min(timeout, 1.0))
            if timeout < 1.0:
                raise UpstreamTimeout("DEADLINE_EXCEEDED", host)
        if version_label is not None and version_label not in self.labels[host]:
            raise UnknownVersionLabel(
                f"INVALID_ARGUMENT: Unrecognized servable version label: {version_label}", host
            )
        self.clock.advance(0.005)
        return [7.0], 2 if version_label == "canary" else 1

    def predict(self, host, timeout, signature, inputs, output, version_label=None):
        return self._attempt(host, timeout, version_label)

    def classify(self, host, timeout, signature, examples, version_label=None):
        self._attempt(host, timeout, version_label)
        return [[("less", 0.9), ("greater", 0.1)]], 1

    def regress(self, host, timeout, signature, examples, version_label=None):
        values, version = self._attempt(host, timeout, version_label)
        return values, version

    def probe(self, host, timeout):
        self.probes.append(host)
        if self.mode[host] != "ok":
            self.clock.advance(timeout if self.mode[host] == "hung" else 0)
            raise UpstreamTimeout("probe", host)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock) -> FakeTransport:
    return FakeTransport(clock)


@pytest.fixture
def make_client(clock, fake):
    clients = []

    def make(**overrides) -> TFServingClient:
        # Strict round-robin unless a test says otherwise: the host order is then easy to follow.
        config = ClientConfig(targets=(A, B), **{"calls_per_host": 1, **overrides})
        events: list[tuple] = []
        client = TFServingClient(
            config,
            transport=fake,
            clock=clock,
            on_error=lambda host, kind: events.append(("error", host, kind)),
            on_ejection=lambda host, ejected: events.append(("ejected" if ejected else "readmitted", host)),
        )
        client.prober.start = lambda: None  # the tests drive probes with probe_due()
        client.events = events
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def predict(client: TFServingClient):
    return client.predict("add", {"a": [3.0], "b": [4.0]})


# ------------------------------------------------------------------------------------- the pool


def test_round_robin_over_admitted_hosts(clock):
    pool = HostPool((A, B), clock=clock)
    assert [pool.order()[0] for _ in range(4)] == [A, B, A, B]


def test_hosts_take_turns_of_several_calls(clock):
    pool = HostPool((A, B), calls_per_turn=3, clock=clock)
    firsts = [pool.order()[0] for _ in range(12)]
    assert firsts == [A, A, A, B, B, B, A, A, A, B, B, B]
    pool.failed(A, "UpstreamTimeout")
    pool.failed(A, "UpstreamTimeout")  # ejected: B takes every turn, A is the fallback
    assert [pool.order() for _ in range(4)] == [[B, A]] * 4


def test_client_takes_its_turns_from_the_configuration(make_client):
    client = make_client(calls_per_host=2)
    assert [predict(client).host for _ in range(6)] == [A, A, B, B, A, A]


def test_ejection_after_consecutive_failures_only(clock):
    pool = HostPool((A, B), eject_after=3, clock=clock)
    pool.failed(A, "UpstreamTimeout")
    pool.failed(A, "UpstreamTimeout")
    pool.succeeded(A)  # a success in between resets the count
    assert not pool.failed(A, "UpstreamTimeout")
    assert not pool.failed(A, "UpstreamTimeout")
    assert pool.failed(A, "UpstreamUnavailable")
    assert pool.is_ejected(A)
    assert pool.order() == [B, A]  # still listed, last: only tried when B fails too
    health = {h.host: h for h in pool.health()}
    assert health[A].ejected
    assert health[A].errors == {"UpstreamTimeout": 4, "UpstreamUnavailable": 1}
    assert health[A].label == "serving host 1"
    assert not health[B].ejected


def test_ejection_time_doubles_while_probes_fail_and_a_probe_readmits(clock):
    pool = HostPool((A, B), eject_after=1, base_seconds=2, max_seconds=5, clock=clock)
    pool.failed(A, "UpstreamTimeout")
    clock.advance(1.9)
    assert pool.due() == []
    clock.advance(0.1)
    assert pool.due() == [A]
    pool.probe_failed(A, "UpstreamTimeout")  # ejected again: 4 s
    clock.advance(3.9)
    assert pool.due() == []
    clock.advance(0.1)
    pool.probe_failed(A, "UpstreamTimeout")  # 8 s, capped at 5 s
    assert pool.health()[0].ejected_for_seconds == 5
    clock.advance(5)
    assert pool.due() == [A]
    pool.succeeded(A)
    assert not pool.is_ejected(A)
    assert pool.due() == []
    pool.failed(A, "UpstreamTimeout")  # a new ejection starts from the base time again
    assert pool.health()[0].ejected_for_seconds == 2


def test_every_host_ejected_still_tries_them_all_soonest_due_first(clock):
    pool = HostPool((A, B), eject_after=1, base_seconds=2, clock=clock)
    pool.failed(B, "UpstreamTimeout")
    clock.advance(1)
    pool.failed(A, "UpstreamTimeout")
    assert pool.order() == [B, A]


def test_retry_budget_stops_reissues_on_a_sick_fleet_and_refills_with_successes(clock):
    pool = HostPool((A, B), eject_after=100, max_tokens=10, token_ratio=0.5, clock=clock)
    for _ in range(5):
        assert pool.may_reissue()
        pool.failed(A, "UpstreamTimeout")
    assert not pool.may_reissue()  # 5 of 10 tokens left: at half, no more re-issues
    pool.succeeded(B)
    assert pool.may_reissue()


def test_attempts_that_never_left_the_client_spend_no_retry_budget(clock):
    # Planned restarts refuse connections: a quiet worker that meets several of them must still
    # move its next call on, as gRPC's transparent retries are never throttled.
    pool = HostPool((A, B), eject_after=100, max_tokens=10, token_ratio=0.1, clock=clock)
    for _ in range(20):
        pool.failed(A, "UpstreamUnavailable", sent=False)
    assert pool.may_reissue()
    for _ in range(5):
        pool.failed(A, "UpstreamUnavailable")
    assert not pool.may_reissue()


def test_attempts_that_never_left_the_client_still_eject_the_host(clock):
    pool = HostPool((A, B), eject_after=2, clock=clock)
    assert not pool.failed(A, "UpstreamUnavailable", sent=False)
    assert pool.failed(A, "UpstreamUnavailable", sent=False)
    assert pool.order() == [B, A]


# ------------------------------------------------------------------------------------- the client


def test_hung_host_costs_one_short_attempt_then_is_skipped(make_client, fake, clock):
    client = make_client(attempt_timeout_seconds=0.25, eject_after_failures=2)
    fake.mode[A] = "hung"
    elapsed = []
    served = []
    for _ in range(10):
        answer = predict(client)
        served.append(answer.host)
        elapsed.append(answer.elapsed_ms)
    assert served == [B] * 10  # no failed call
    assert max(elapsed) < 500
    assert max(elapsed) == pytest.approx(255)  # 250 ms on A, then 5 ms on B
    hung_attempts = [a for a in fake.attempts if a[0] == A]
    assert hung_attempts == [(A, 0.25), (A, 0.25)]  # ejected after two: never tried again
    assert ("ejected", A) in client.events
    assert client.events.count(("error", A, "UpstreamTimeout")) == 2


def test_refused_host_is_passed_over_at_once(make_client, fake):
    client = make_client()
    fake.mode[A] = "refused"
    answers = [predict(client) for _ in range(4)]
    assert {a.host for a in answers} == {B}
    assert max(a.elapsed_ms for a in answers) == pytest.approx(5)


def test_last_host_gets_all_the_time_left(make_client, fake):
    """One host left: a slow answer within the call's deadline is still an answer."""
    client = make_client(timeout_seconds=2, attempt_timeout_seconds=0.25)
    fake.mode = {A: "refused", B: "slow"}
    answer = predict(client)  # A first (round-robin starts there), then B, the last one
    assert fake.attempts == [(A, 0.25), (B, 2)]
    assert answer.host == B
    assert answer.elapsed_ms == pytest.approx(1005)  # 1 s, then 5 ms of answer
    fake.mode = {A: "hung", B: "hung"}
    with pytest.raises(UpstreamTimeout):
        predict(client)  # B first now: 0.25 s, then A with the 1.75 s left
    assert fake.attempts[2:] == [(B, 0.25), (A, 1.75)]


def test_only_admitted_host_gets_all_the_time_left(make_client, fake, clock):
    """B ejected (restarting): a slow A is waited for, not abandoned for a host known to be down."""
    client = make_client(timeout_seconds=2, attempt_timeout_seconds=0.25, eject_after_failures=1)
    fake.mode = {A: "ok", B: "refused"}
    predict(client)  # A
    predict(client)  # B refused, ejected; then A
    assert client.events[-1] == ("ejected", B)
    fake.attempts.clear()
    fake.mode[A] = "slow"
    answer = predict(client)
    assert answer.host == A
    assert fake.attempts == [(A, pytest.approx(2))]
    # A fails fast (refused): the ejected host still gets the time left, as before.
    fake.mode = {A: "refused", B: "ok"}
    fake.attempts.clear()
    assert predict(client).host == B
    assert [host for host, _ in fake.attempts] == [A, B]


def test_answers_are_not_reissued_and_do_not_count_as_failures(make_client, fake):
    client = make_client(eject_after_failures=1)
    fake.mode = {A: "rejects", B: "rejects"}
    for _ in range(3):
        with pytest.raises(UpstreamRejected):
            predict(client)
    assert len(fake.attempts) == 3
    assert not any(h.ejected for h in client.host_health())


def test_probe_readmits_the_host_when_it_answers_again(make_client, fake, clock):
    client = make_client(eject_after_failures=1, ejection_seconds=2)
    fake.mode[A] = "hung"
    predict(client)
    predict(client)
    assert client.host_health()[0].ejected
    clock.advance(2)
    client.prober.probe_due()  # still hung: ejected for 4 s more
    assert fake.probes == [A]
    assert client.host_health()[0].ejected
    fake.mode[A] = "ok"
    clock.advance(4)
    client.prober.probe_due()
    assert not client.host_health()[0].ejected
    assert ("readmitted", A) in client.events
    assert {predict(client).host for _ in range(2)} == {A, B}


def test_host_statuses_ask_concurrently_and_skip_ejected_hosts():
    """Real time: two hosts that each take 0.3 s answer in about 0.3 s, not 0.6 s."""

    class Slow(Transport):
        def __init__(self) -> None:
            self.calls: list[str] = []

        def model_status(self, host, timeout):
            self.calls.append(host)
            time.sleep(0.3)
            raise UpstreamTimeout("DEADLINE_EXCEEDED", host)

    slow = Slow()
    client = TFServingClient(ClientConfig(targets=(A, B), eject_after_failures=1), transport=slow)
    client.prober.start = lambda: None
    started = time.monotonic()
    statuses = client.host_statuses()
    assert time.monotonic() - started < 0.55
    assert [s.label for s in statuses] == ["serving host 1", "serving host 2"]
    assert all(s.error and not s.available for s in statuses)
    started = time.monotonic()
    client.host_statuses()  # both ejected now: answered from the client's own state
    assert time.monotonic() - started < 0.1
    assert len(slow.calls) == 2
    client.close()


def test_prober_thread_starts_only_at_the_first_ejection(make_client, fake):
    client = TFServingClient(ClientConfig(targets=(A, B), eject_after_failures=1), transport=fake)
    try:
        assert client.prober._thread is None
        predict(client)
        assert client.prober._thread is None
        fake.mode = {A: "refused", B: "refused"}
        with pytest.raises(UpstreamUnavailable):
            predict(client)
        assert isinstance(client.prober._thread, threading.Thread)
    finally:
        client.close()
    assert not client.prober._thread.is_alive()


# ------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"targets": (A, A)}, "targets", "more than once"),
        ({"targets": ("tfs-a",)}, "targets", "not host:port"),
        ({"targets": ("tfs-a:99999",)}, "targets", "not host:port"),
        ({"targets": ()}, "targets", "no TF Serving grpc targets"),
        ({"protocol": "rest", "rest_targets": (A, A)}, "rest_targets", "more than once"),
        ({"timeout_seconds": 0}, "timeout_seconds", "positive"),
        ({"attempt_timeout_seconds": -1}, "attempt_timeout_seconds", "positive"),
        ({"eject_after_failures": 0}, "eject_after_failures", "at least 1"),
        ({"calls_per_host": 0}, "calls_per_host", "at least 1"),
    ],
)
def test_bad_config_names_the_field(overrides, field, words):
    with pytest.raises(ConfigError) as error:
        ClientConfig(**{"targets": (A, B), **overrides})
    assert error.value.field == field
    assert words in str(error.value)


def test_ipv6_targets_are_accepted():
    assert ClientConfig(targets=("[::1]:8500", "127.0.0.1:8500")).hosts[0] == "[::1]:8500"


# ------------------------------------------------------------------------------ version labels


def test_version_label_is_asked_for_and_reported(make_client, fake):
    client = make_client()
    assert predict(client).version_label is None
    answer = client.predict("add", {"a": [3.0], "b": [4.0]}, version_label="canary")
    assert (answer.version_label, answer.model_version) == ("canary", 2)
    assert (
        client.classify("classify", [{"a": 1.0, "b": 2.0}], version_label="stable").version_label == "stable"
    )
    assert client.regress("regress", [{"a": 1.0, "b": 2.0}], version_label="stable").version_label == "stable"
    assert fake.asked_labels == [None, "canary", "stable", "stable"]


def test_host_without_the_label_is_passed_over_but_never_ejected(make_client, fake):
    client = make_client(eject_after_failures=1)
    fake.labels[A] = {"stable"}  # A not set up for the canary yet
    answers = [client.predict("add", {"a": [1.0], "b": [1.0]}, version_label="canary") for _ in range(6)]
    assert {a.host for a in answers} == {B}
    assert all(a.model_version == 2 for a in answers)
    assert not any(h.ejected for h in client.host_health())
    assert not any(event[0] == "ejected" for event in client.events)
    assert ("error", A, "UnknownVersionLabel") in client.events
    # A still serves the labels it has, and unlabelled calls, in its turn.
    assert {
        client.predict("add", {"a": [1.0], "b": [1.0]}, version_label="stable").host for _ in range(2)
    } == {A, B}
    assert {predict(client).host for _ in range(2)} == {A, B}


def test_label_known_nowhere_is_unavailable_not_rejected(make_client, fake):
    client = make_client(eject_after_failures=1)
    fake.labels = {A: {"stable"}, B: {"stable"}}
    for _ in range(3):
        with pytest.raises(UnknownVersionLabel) as error:
            client.predict("add", {"a": [1.0], "b": [1.0]}, version_label="canary")
        assert isinstance(error.value, UpstreamUnavailable)  # 503 for the user, not 400
        assert not isinstance(error.value, UpstreamRejected)
    assert len(fake.attempts) == 6  # both hosts asked each time
    assert not any(h.ejected for h in client.host_health())
    assert all(h.consecutive_failures == 0 for h in client.host_health())


# ------------------------------------------------------------------------------ shadow calls


def test_shadow_call_is_one_attempt_on_the_next_host(make_client, fake):
    client = make_client(attempt_timeout_seconds=0.25, timeout_seconds=2)
    answer = client.shadow_predict("add", {"a": [3.0], "b": [4.0]}, version_label="canary")
    assert (answer.host, answer.version_label, answer.model_version) == (A, "canary", 2)
    assert fake.attempts == [(A, 0.25)]  # one attempt's time, even with the whole deadline left
    assert client.shadow_classify("classify", [{"a": 1.0, "b": 1.0}], version_label="canary").results
    assert client.shadow_regress("regress", [{"a": 1.0, "b": 1.0}], version_label="canary").values == [7.0]


def test_shadow_calls_leave_no_trace_in_the_routing(make_client, fake):
    client = make_client(eject_after_failures=1)
    fake.mode[A] = "hung"
    for _ in range(5):
        with pytest.raises(UpstreamTimeout):
            client.shadow_predict("add", {"a": [1.0], "b": [1.0]}, version_label="canary")
    fake.labels[A] = set()
    fake.mode[A] = "ok"
    with pytest.raises(UnknownVersionLabel):
        client.shadow_predict("add", {"a": [1.0], "b": [1.0]}, version_label="canary")
    assert [host for host, _ in fake.attempts] == [A] * 6  # no failover to B
    assert client.events == []  # no on_error, no ejection
    assert all(h.consecutive_failures == 0 and not h.errors and not h.ejected for h in client.host_health())
    # The user calls' rotation is untouched: A then B, as for a fresh client.
    assert [predict(client).host for _ in range(2)] == [A, B]


def test_pool_peek_takes_no_turn(clock):
    pool = HostPool((A, B), calls_per_turn=2, clock=clock)
    assert [pool.peek() for _ in range(3)] == [A, A, A]
    assert [pool.order()[0] for _ in range(3)] == [A, A, B]
    assert pool.peek() == B
    pool.failed(B, "UpstreamTimeout")
    pool.failed(B, "UpstreamTimeout")
    assert pool.peek() == A  # admitted hosts first
    clock.advance(1)
    pool.failed(A, "UpstreamTimeout")
    pool.failed(A, "UpstreamTimeout")
    assert pool.peek() == B  # all ejected: the soonest due
