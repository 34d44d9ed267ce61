"""When TF Serving cannot answer, the user gets a 503 with a clear message, never a 500."""

from __future__ import annotations

import time

import pytest
from tfsp_client import ClientConfig, TFServingClient, UpstreamTimeout, UpstreamUnavailable

from .conftest import free_port

BODY = {"operation": "add", "a": 3, "b": 4}


@pytest.fixture
def unreachable(settings):
    ports = [free_port(), free_port()]
    settings.TFSP_TF_SERVING_TARGETS = [f"127.0.0.1:{p}" for p in ports]
    settings.TFSP_TF_SERVING_REST_TARGETS = [f"127.0.0.1:{p}" for p in ports]
    return settings


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize("path", ["/api/v1/predict", "/api/v1/classify", "/api/v1/regress"])
def test_unreachable_tf_serving_is_a_503(client, unreachable, protocol, path):
    unreachable.TFSP_TF_SERVING_PROTOCOL = protocol
    response = client.post(path, BODY, content_type="application/json")
    assert response.status_code == 503
    assert response.json() == {
        "error": "The model server is unavailable right now. Please try again in a moment."
    }


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_hung_tf_serving_is_a_503_after_the_deadline(client, settings, silent_server, protocol):
    settings.TFSP_TF_SERVING_TARGETS = [silent_server]
    settings.TFSP_TF_SERVING_REST_TARGETS = [silent_server]
    settings.TFSP_TF_SERVING_PROTOCOL = protocol
    settings.TFSP_TF_SERVING_TIMEOUT_SECONDS = 0.5
    started = time.monotonic()
    response = client.post("/api/v1/predict", BODY, content_type="application/json")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "did not answer in time" in response.json()["error"]
    assert elapsed < 2, f"the 0.5 s deadline was not applied ({elapsed:.1f} s)"


def test_home_page_shows_the_outage_as_a_503_page(client, unreachable):
    response = client.get("/", {"a": "3", "operation": "add", "b": "4"})
    assert response.status_code == 503
    page = response.content.decode()
    assert "The model server is unavailable right now" in page
    assert 'id="result"' not in page


def test_status_page_lists_hosts_that_do_not_answer(client, unreachable):
    response = client.get("/status")
    assert response.status_code == 200
    page = response.content.decode()
    assert "serving host 1" in page
    assert "serving host 2" in page
    for target in unreachable.TFSP_TF_SERVING_TARGETS:  # a public page: no internal names
        assert target not in page
    assert "Connection refused" not in page  # nor gRPC's own messages
    assert "The model server is unavailable right now" in page
    assert "Not ready" in page


def test_readyz_is_503_when_no_host_answers(client, unreachable):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert [h["host"] for h in body["hosts"]] == unreachable.TFSP_TF_SERVING_TARGETS
    assert all(not h["available"] and h["error"] for h in body["hosts"])


def test_healthz_does_not_depend_on_tf_serving(client, unreachable):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_upstream_errors_are_counted_in_the_metrics(client, unreachable):
    def count() -> float:
        text = client.get("/metrics").content.decode()
        labels = 'call="multiply",kind="UpstreamUnavailable",version_label=""'
        prefix = f"tfsp_web_upstream_errors_total{{{labels}}} "
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = count()
    client.post("/api/v1/predict", {**BODY, "operation": "multiply"}, content_type="application/json")
    assert count() == before + 1
    text = client.get("/metrics").content.decode()
    assert 'tfsp_web_requests_total{endpoint="api-predict",operation="multiply",status="503"}' in text
    assert 'tfsp_web_request_duration_seconds_count{endpoint="api-predict",operation="multiply"}' in text


def test_client_raises_typed_errors_without_django():
    client = TFServingClient(ClientConfig(targets=(f"127.0.0.1:{free_port()}",), timeout_seconds=1))
    try:
        with pytest.raises(UpstreamUnavailable) as error:
            client.predict("add", {"a": [1.0], "b": [2.0]})
        assert error.value.user_message.startswith("The model server is unavailable")
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_refused_connection_is_reported_as_never_sent(protocol):
    # What lets the client re-issue it elsewhere without spending its retry budget.
    target = f"127.0.0.1:{free_port()}"
    client = TFServingClient(
        ClientConfig(targets=(target,), rest_targets=(target,), protocol=protocol, timeout_seconds=1)
    )
    try:
        with pytest.raises(UpstreamUnavailable) as error:
            client.predict("add", {"a": [1.0], "b": [2.0]})
        assert error.value.sent is False, error.value.detail
    finally:
        client.close()


def test_client_deadline_applies_to_a_hung_server(silent_server):
    client = TFServingClient(ClientConfig(targets=(silent_server,), timeout_seconds=0.3))
    try:
        with pytest.raises(UpstreamTimeout):
            client.predict("add", {"a": [1.0], "b": [2.0]})
    finally:
        client.close()
