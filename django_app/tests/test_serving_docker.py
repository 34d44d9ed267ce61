"""The API, pages and client against two real TF Serving stand-in containers: Predict, Classify,
Regress over gRPC and REST, round-robin, failover when a host stops, recovery when it comes back."""

from __future__ import annotations

import struct
import time

import pytest
from calculator_web import serving

from .conftest import MODEL_NAME

pytestmark = pytest.mark.docker


def f32(value: float) -> float:
    """Round to float32 (the model's arithmetic: one rounding of the exact result)."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


REFERENCE = {"add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b}
CASES = [
    (3, 4),
    (-2.5, 0.5),
    ([1.5, 2, 1e10, -7], [2, 0.1, 3e10, 7]),
    ([0.1], [0.2]),
]


def post(client, path, body):
    return client.post(path, body, content_type="application/json")


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize("operation", ["add", "subtract", "multiply"])
@pytest.mark.parametrize(("a", "b"), CASES)
def test_predict(client, settings, use_standins, protocol, operation, a, b):
    settings.TFSP_TF_SERVING_PROTOCOL = protocol
    response = post(client, "/api/v1/predict", {"operation": operation, "a": a, "b": b})
    assert response.status_code == 200, response.content
    body = response.json()
    a_list, b_list = (a, b) if isinstance(a, list) else ([a], [b])
    expected = [f32(REFERENCE[operation](f32(x), f32(y))) for x, y in zip(a_list, b_list, strict=True)]
    got = body["result"] if isinstance(a, list) else [body["result"]]
    assert [f32(v) for v in got] == expected
    assert body["operation"] == operation
    assert body["model_name"] == MODEL_NAME
    hosts = settings.TFSP_TF_SERVING_TARGETS if protocol == "grpc" else settings.TFSP_TF_SERVING_REST_TARGETS
    assert body["served_by"] in hosts
    assert body["model_version"] == (1 if protocol == "grpc" else None)
    assert body["elapsed_ms"] > 0


def test_result_is_shown_as_the_shortest_float32(client, use_standins):
    response = post(client, "/api/v1/predict", {"operation": "add", "a": 0.1, "b": 0.2})
    assert response.json()["result"] == 0.3


def test_result_overflowing_float32_is_a_400(client, use_standins):
    response = post(client, "/api/v1/predict", {"operation": "multiply", "a": 3e38, "b": 2})
    assert response.status_code == 400
    assert "too large for float32" in response.json()["error"]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_classify(client, settings, use_standins, protocol):
    settings.TFSP_TF_SERVING_PROTOCOL = protocol
    response = post(client, "/api/v1/classify", {"a": [1, 2, 3], "b": [2, 2, 2]})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["label"] for r in results] == ["less", "equal", "greater"]
    for result in results:
        scores = {c["label"]: c["score"] for c in result["classes"]}
        assert scores[result["label"]] == max(scores.values())


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_regress(client, settings, use_standins, protocol):
    settings.TFSP_TF_SERVING_PROTOCOL = protocol
    response = post(client, "/api/v1/regress", {"a": [1, 2.5], "b": [2, -10]})
    assert response.status_code == 200, response.content
    assert response.json()["result"] == [3, -7.5]
    scalar = post(client, "/api/v1/regress", {"a": 3, "b": 4}).json()
    assert scalar["result"] == 7


def test_home_page_shows_result_version_and_round_trip(client, use_standins):
    response = client.get("/", {"a": "3", "operation": "add", "b": "4"})
    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="answer" id="answer">7</span>' in page
    assert '<dd id="model-version">1</dd>' in page
    assert " ms</dd>" in page


def test_status_page_shows_hosts_versions_and_signatures(client, use_standins):
    page = client.get("/status").content.decode()
    for index, standin in enumerate(use_standins, start=1):
        assert f"serving host {index}" in page
        assert standin.grpc_target not in page  # a public page: labels, not internal names
    assert page.count("In rotation") == 2
    assert page.count("v1 AVAILABLE") == 2
    for signature in ("add", "subtract", "multiply", "classify", "regress"):
        assert f"<code>{signature}</code>" in page
    assert "tensorflow/serving/classify" in page
    assert "Ready" in page


def test_readyz_when_the_model_is_available(client, use_standins):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert all(h["available"] and h["versions"] == {"1": "AVAILABLE"} for h in body["hosts"])


def test_requests_are_spread_over_both_hosts(client, use_standins, settings):
    """Hosts take turns of TFSP_TF_SERVING_CALLS_PER_HOST calls: both answer within two turns."""
    turns = settings.TFSP_TF_SERVING_CALLS_PER_HOST
    served_by = [
        post(client, "/api/v1/predict", {"operation": "add", "a": 1, "b": 1}).json()["served_by"]
        for _ in range(2 * turns)
    ]
    assert set(served_by) == {c.grpc_target for c in use_standins}
    assert served_by.count(served_by[0]) == turns  # a whole turn each, no more


def test_one_channel_per_process(client, use_standins):
    post(client, "/api/v1/predict", {"operation": "add", "a": 1, "b": 1})
    first = serving.get_client()
    for _ in range(5):
        post(client, "/api/v1/predict", {"operation": "add", "a": 1, "b": 1})
    assert serving.get_client() is first
    assert set(first._transport._channels) == {c.grpc_target for c in use_standins}


def test_failover_when_one_host_stops_then_recovery(client, use_standins):
    stopped, alive = use_standins
    stopped.stop()
    try:
        for _ in range(6):
            response = post(client, "/api/v1/predict", {"operation": "multiply", "a": 6, "b": 7})
            assert response.status_code == 200, response.content
            assert response.json() == {**response.json(), "result": 42, "served_by": alive.grpc_target}
        assert client.get("/readyz").status_code == 200
        status = client.get("/status").content.decode()
        assert "The model server is unavailable right now" in status
    finally:
        stopped.start()
    # The same web process (same client, same channels) uses the restarted host again.
    deadline = time.monotonic() + 90
    served_by: set[str] = set()
    while time.monotonic() < deadline and served_by != {stopped.grpc_target, alive.grpc_target}:
        response = post(client, "/api/v1/predict", {"operation": "add", "a": 1, "b": 2})
        assert response.status_code == 200
        served_by.add(response.json()["served_by"])
        time.sleep(0.5)
    assert stopped.grpc_target in served_by, "the restarted host never served again"


def test_all_hosts_down_is_a_503_and_recovers_without_a_web_restart(client, use_standins):
    client_before = serving.get_client()
    for standin in use_standins:
        standin.stop()
    try:
        response = post(client, "/api/v1/predict", {"operation": "add", "a": 3, "b": 4})
        assert response.status_code == 503
        assert "unavailable" in response.json()["error"]
        assert client.get("/readyz").status_code == 503
    finally:
        for standin in use_standins:
            standin.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        response = post(client, "/api/v1/predict", {"operation": "add", "a": 3, "b": 4})
        if response.status_code == 200:
            break
        assert response.status_code == 503
        time.sleep(1)
    assert response.status_code == 200, "no recovery within 90 s after the restart"
    assert response.json()["result"] == 7
    assert serving.get_client() is client_before
