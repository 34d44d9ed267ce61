"""Release routing and shadow traffic through the web app, against a fake transport (no server).

The fake answers like the calculator model; each version label can be made to answer differently,
fail, or hang, so that the canary split, the version_label field, the metrics and every shadow
outcome can be checked, and so can the promise that a shadow call never touches the user's answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from calculator_web import serving
from calculator_web.openapi import openapi_document
from calculator_web.shadow import ShadowRunner, classes_difference, values_difference
from prometheus_client import REGISTRY
from tfsp_client import TFServingClient, UnknownVersionLabel, UpstreamUnavailable
from tfsp_client.transport import Transport

VERSIONS = {None: 1, "stable": 1, "canary": 2}


class FakeServing(Transport):
    """The calculator on two hosts; ``canary`` says how the canary answers: same, off, small, fails,
    crashes, hangs (until ``release`` is set) or unknown (no host has the label)."""

    def __init__(self) -> None:
        self.canary = "same"
        self.calls: list[tuple[str, str | None, str]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def _answer(self, host, operation, label, values):
        with self.lock:
            self.calls.append((operation, label, threading.current_thread().name))
        if label == "canary":
            if self.canary == "unknown":
                raise UnknownVersionLabel(
                    f"INVALID_ARGUMENT: Unrecognized servable version label: {label}", host
                )
            if self.canary == "fails":
                raise UpstreamUnavailable("UNAVAILABLE", host)
            if self.canary == "crashes":
                raise RuntimeError("a bug in the shadow path")
            if self.canary == "hangs":
                self.release.wait(5)
            if self.canary == "off":
                values = [v + 1 for v in values]
            if self.canary == "small":
                values = [v * (1 + 1e-7) for v in values]
        return values, VERSIONS[label]

    def predict(self, host, timeout, signature, inputs, output, version_label=None):
        values = [a + b for a, b in zip(inputs["a"], inputs["b"], strict=True)]
        return self._answer(host, signature, version_label, values)

    def regress(self, host, timeout, signature, examples, version_label=None):
        return self._answer(host, "regress", version_label, [e["a"] + e["b"] for e in examples])

    def classify(self, host, timeout, signature, examples, version_label=None):
        scores, version = self._answer(host, "classify", version_label, [e["a"] - e["b"] for e in examples])
        return [
            [("less", float(s < 0)), ("equal", float(s == 0)), ("greater", float(s > 0))] for s in scores
        ], version

    def probe(self, host, timeout):
        pass


@pytest.fixture
def fake(settings, monkeypatch):
    settings.TFSP_TF_SERVING_TARGETS = ["tfs-a:8500", "tfs-b:8500"]
    transport = FakeServing()
    client = TFServingClient(serving.client_config(), transport=transport)
    monkeypatch.setattr(serving, "_client", client)
    monkeypatch.setattr(serving, "_routing", None)
    monkeypatch.setattr(serving, "_shadows", None)
    yield transport
    transport.release.set()
    if serving._shadows is not None:
        serving._shadows.shutdown()
    client.close()


@pytest.fixture
def release(settings, tmp_path, fake):
    """Write the routing file (as Ansible does: replace it) and point the app at it."""
    path = tmp_path / "routing.json"
    settings.TFSP_ROUTING_FILE = str(path)

    def write(**fields) -> None:
        settings.TFSP_ROUTING_FILE = str(path)
        staging = tmp_path / "routing.json.tmp"
        staging.write_text(json.dumps({"release": fields or None}))
        staging.replace(path)
        serving._routing = None  # read it now, not within the second

    return write


def draws(monkeypatch, *values: float) -> None:
    """Fix the app's random draws (one per request for the label, one more for the shadow)."""
    sequence = iter(values)
    monkeypatch.setattr(serving, "draw", lambda: next(sequence))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def shadow_count(operation: str, outcome: str) -> float:
    return sample("tfsp_web_shadow_requests_total", operation=operation, outcome=outcome)


def wait_for(condition, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the shadow call was not counted in time"
        time.sleep(0.01)


def post(client, path, body):
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


ADD = {"operation": "add", "a": [1, 2], "b": [3, 4]}
PAIRS = {"a": [1, 2, 3], "b": [2, 2, 2]}


# ------------------------------------------------------------------------------------- routing


def test_no_routing_file_configured_asks_for_no_label(client, settings, fake):
    settings.TFSP_ROUTING_FILE = ""
    body = post(client, "/api/v1/predict", ADD)
    assert (body["version_label"], body["model_version"]) == (None, 1)
    assert post(client, "/api/v1/classify", PAIRS)["version_label"] is None
    assert post(client, "/api/v1/regress", PAIRS)["version_label"] is None
    assert [label for _, label, _ in fake.calls] == [None, None, None]
    assert serving._routing is None


def test_missing_or_empty_release_asks_for_no_label(client, release, fake):
    assert post(client, "/api/v1/predict", ADD)["version_label"] is None  # file not written yet
    release()  # {"release": null}
    assert post(client, "/api/v1/predict", ADD)["version_label"] is None
    assert [label for _, label, _ in fake.calls] == [None, None]


def test_canary_split_by_draw(client, release, fake, monkeypatch):
    release(stable_label="stable", canary_label="canary", canary_percent=10, shadow_percent=0)
    draws(monkeypatch, 0.05, 0.1, 0.5, 0.0999)
    answers = [post(client, "/api/v1/predict", ADD) for _ in range(4)]
    assert [a["version_label"] for a in answers] == ["canary", "stable", "stable", "canary"]
    assert [a["model_version"] for a in answers] == [2, 1, 1, 2]
    assert [label for _, label, _ in fake.calls] == ["canary", "stable", "stable", "canary"]


def test_canary_share_is_about_right(client, release, fake):
    release(stable_label="stable", canary_label="canary", canary_percent=30, shadow_percent=0)
    labels = [serving.pick_label(serving.current_release()) for _ in range(4000)]
    assert 0.26 < labels.count("canary") / len(labels) < 0.34


@pytest.mark.parametrize(("path", "body"), [("/api/v1/classify", PAIRS), ("/api/v1/regress", PAIRS)])
def test_classify_and_regress_carry_the_label(client, release, fake, monkeypatch, path, body):
    release(stable_label="stable", canary_label="canary", canary_percent=100, shadow_percent=0)
    answer = post(client, path, body)
    assert (answer["version_label"], answer["model_version"]) == ("canary", 2)


def test_canary_known_on_no_host_is_a_503(client, release, fake):
    release(stable_label="stable", canary_label="canary", canary_percent=100, shadow_percent=0)
    fake.canary = "unknown"
    response = client.post("/api/v1/predict", ADD, content_type="application/json")
    assert response.status_code == 503
    assert "unavailable" in response.json()["error"]
    assert not any(h.ejected for h in serving.get_client().host_health())


def test_home_page_shows_the_label(client, release, fake):
    page = client.get("/", {"a": "3", "operation": "add", "b": "4"}).content.decode()
    assert 'id="version-label"' not in page
    release(stable_label="stable", canary_label="canary", canary_percent=100, shadow_percent=0)
    page = client.get("/", {"a": "3", "operation": "add", "b": "4"}).content.decode()
    assert '<dd id="model-version">2</dd>' in page
    assert '<dd id="version-label">canary</dd>' in page


def test_upstream_metrics_carry_the_label(client, release, fake, settings):
    settings.TFSP_ROUTING_FILE = ""
    before = sample("tfsp_web_upstream_duration_seconds_count", call="subtract", version_label="")
    post(client, "/api/v1/predict", {**ADD, "operation": "subtract"})
    assert sample("tfsp_web_upstream_duration_seconds_count", call="subtract", version_label="") == before + 1
    release(stable_label="stable", canary_label="canary", canary_percent=100, shadow_percent=0)
    before = sample("tfsp_web_upstream_duration_seconds_count", call="subtract", version_label="canary")
    post(client, "/api/v1/predict", {**ADD, "operation": "subtract"})
    assert (
        sample("tfsp_web_upstream_duration_seconds_count", call="subtract", version_label="canary")
        == before + 1
    )
    fake.canary = "unknown"
    labels = {"call": "subtract", "version_label": "canary", "kind": "UnknownVersionLabel"}
    before = sample("tfsp_web_upstream_errors_total", **labels)
    client.post("/api/v1/predict", {**ADD, "operation": "subtract"}, content_type="application/json")
    assert sample("tfsp_web_upstream_errors_total", **labels) == before + 1


def test_routing_gauges_and_errors(client, release, fake, settings):
    release(stable_label="stable", canary_label="canary", canary_percent=12.5, shadow_percent=50)
    post(client, "/api/v1/predict", ADD)
    assert sample("tfsp_web_routing_percent", kind="canary") == 12.5
    assert sample("tfsp_web_routing_percent", kind="shadow") == 50
    errors = sample("tfsp_web_routing_errors_total")
    path = settings.TFSP_ROUTING_FILE
    with open(path, "w") as file:
        file.write('{"release": {"stable_label": "stable"}}')
    serving._routing._next_check = float("-inf")  # as if a second had passed
    post(client, "/api/v1/predict", ADD)
    assert sample("tfsp_web_routing_errors_total") == errors + 1
    assert sample("tfsp_web_routing_percent", kind="canary") == 12.5  # the last good routing stays
    text = client.get("/metrics").content.decode()
    assert 'tfsp_web_routing_percent{kind="canary"} 12.5' in text


def test_openapi_documents_the_label():
    document = openapi_document("http://testserver/")
    for path in ("/api/v1/predict", "/api/v1/classify", "/api/v1/regress"):
        schema = document["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["properties"]["version_label"]["type"] == ["string", "null"]
        assert "model_version" in schema["properties"]


# ------------------------------------------------------------------------------------- shadow


def shadow_release(release, **changes) -> None:
    release(
        **{
            "stable_label": "stable",
            "canary_label": "canary",
            "canary_percent": 0,
            "shadow_percent": 100,
            **changes,
        }
    )


@pytest.mark.parametrize(
    ("path", "body", "operation"),
    [
        ("/api/v1/predict", ADD, "add"),
        ("/api/v1/classify", PAIRS, "classify"),
        ("/api/v1/regress", PAIRS, "regress"),
    ],
)
def test_shadow_match(client, release, fake, path, body, operation):
    shadow_release(release)
    before = shadow_count(operation, "match")
    durations = sample("tfsp_web_shadow_duration_seconds_count", operation=operation)
    answer = post(client, path, body)
    assert (answer["version_label"], answer["model_version"]) == ("stable", 1)
    wait_for(lambda: shadow_count(operation, "match") == before + 1)
    assert sample("tfsp_web_shadow_duration_seconds_count", operation=operation) == durations + 1
    user, shadow = fake.calls
    assert (user[1], user[2].startswith("tfsp-shadow")) == ("stable", False)
    assert (shadow[1], shadow[2].startswith("tfsp-shadow")) == ("canary", True)


def test_shadow_mismatch_is_counted_and_logged(client, release, fake, caplog):
    shadow_release(release)
    fake.canary = "off"
    before = shadow_count("add", "mismatch")
    with caplog.at_level(logging.WARNING, logger="calculator_web.shadow"):
        answer = post(client, "/api/v1/predict", ADD)
        wait_for(lambda: shadow_count("add", "mismatch") == before + 1)
    assert answer["result"] == [4, 6]  # the user's answer is stable's
    messages = [r.getMessage() for r in caplog.records]
    assert any("shadow add (2 operands)" in m and "value 0: stable 4.0, canary 5.0" in m for m in messages), (
        messages
    )


def test_shadow_tolerance(client, release, fake):
    shadow_release(release)
    fake.canary = "small"  # relative difference 1e-7: within the default 1e-6
    before = shadow_count("regress", "match")
    post(client, "/api/v1/regress", PAIRS)
    wait_for(lambda: shadow_count("regress", "match") == before + 1)
    shadow_release(release, tolerance=1e-9)
    before = shadow_count("regress", "mismatch")
    post(client, "/api/v1/regress", PAIRS)
    wait_for(lambda: shadow_count("regress", "mismatch") == before + 1)


@pytest.mark.parametrize("behaviour", ["fails", "crashes", "unknown"])
def test_shadow_errors_never_reach_the_user(client, release, fake, behaviour):
    shadow_release(release)
    fake.canary = behaviour
    before = shadow_count("multiply", "error")
    answer = post(client, "/api/v1/predict", {**ADD, "operation": "multiply"})
    assert answer["version_label"] == "stable"
    wait_for(lambda: shadow_count("multiply", "error") == before + 1)
    assert not any(h.ejected or h.consecutive_failures for h in serving.get_client().host_health())


def test_shadow_does_not_delay_the_user_and_a_full_backlog_is_skipped(client, release, fake, monkeypatch):
    shadow_release(release)
    fake.canary = "hangs"
    monkeypatch.setattr(serving, "_shadows", ShadowRunner(workers=1, backlog=2))
    before = shadow_count("add", "skipped")
    started = time.monotonic()
    for _ in range(4):
        post(client, "/api/v1/predict", ADD)
    assert time.monotonic() - started < 1  # four answers while the canary hangs for 5 s
    assert shadow_count("add", "skipped") == before + 2  # two in the backlog, two skipped
    fake.release.set()
    wait_for(lambda: sum(1 for c in fake.calls if c[1] == "canary") == 2)


def test_shadow_share_and_only_for_stable_answers(client, release, fake, monkeypatch):
    shadow_release(release, canary_percent=50, shadow_percent=25)
    # request 1: 0.7 -> stable, 0.2 -> shadowed; request 2: 0.7 -> stable, 0.3 -> not;
    # request 3: 0.1 -> canary, never shadowed (the 0.0 left over would shadow it if it were).
    draws(monkeypatch, 0.7, 0.2, 0.7, 0.3, 0.1, 0.0)
    before = shadow_count("add", "match")
    for _ in range(3):
        post(client, "/api/v1/predict", ADD)
    wait_for(lambda: shadow_count("add", "match") == before + 1)
    time.sleep(0.05)
    user = [label for _, label, thread in fake.calls if not thread.startswith("tfsp-shadow")]
    shadowed = [label for _, label, thread in fake.calls if thread.startswith("tfsp-shadow")]
    assert (user, shadowed) == (["stable", "stable", "canary"], ["canary"])


def test_a_broken_shadow_pool_never_reaches_the_user(client, release, fake, monkeypatch):
    shadow_release(release)

    def broken():
        raise RuntimeError("no pool")

    monkeypatch.setattr(serving, "shadow_runner", broken)
    assert post(client, "/api/v1/predict", ADD)["result"] == [4, 6]


def test_shadow_pool_is_shut_down_with_the_client(client, release, fake, settings):
    shadow_release(release)
    post(client, "/api/v1/predict", ADD)
    runner = serving._shadows
    assert runner is not None
    settings.TFSP_TF_SERVING_TIMEOUT_SECONDS = 1.5  # a new configuration: a new client
    serving.get_client().close()
    assert serving._shadows is None
    assert runner._executor._shutdown


# ------------------------------------------------------------------------------------- compare


def test_values_difference():
    assert values_difference([1.0, 2.0], [1.0, 2.0], 0) is None
    assert values_difference([1.0, 1e9], [1.0 + 1e-7, 1e9 + 100], 1e-6) is None  # abs and rel
    assert values_difference([0.0, 2.0], [0.0, 2.1], 1e-6) == "value 1: stable 2.0, canary 2.1"
    assert values_difference([1.0], [1.0, 2.0], 1e-6) == "1 values from stable, 2 from the canary"
    assert values_difference([1.0], [float("nan")], 1e-6) is not None


def test_classes_difference():
    stable = [[("less", 0.9), ("greater", 0.1)]]
    assert classes_difference(stable, [[("less", 0.9 + 1e-8), ("greater", 0.1)]], 1e-6) is None
    assert classes_difference(stable, [[("less", 0.8), ("greater", 0.2)]], 1e-6) == (
        "result 0: stable ('less', 0.9), canary ('less', 0.8)"
    )
    assert "stable ('less', 0.9), canary ('greater', 0.1)" in classes_difference(
        stable, [[("greater", 0.1), ("less", 0.9)]], 1e-6
    )
    assert (
        classes_difference(stable, [[("less", 0.9)]], 1e-6)
        == "result 0: 2 classes from stable, 1 from the canary"
    )
    assert classes_difference(stable, [], 1e-6) == "1 results from stable, 0 from the canary"
