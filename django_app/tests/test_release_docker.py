"""Release routing against a real TF Serving stand-in serving calculator versions 1 and 2 under the
labels stable=1 and canary=2 (both copies of the exported version 1): the canary split, the
version_label and model_version of each answer, shadow traffic compared, an unknown label."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from calculator_web import serving
from prometheus_client import REGISTRY
from tfsp_client import ClientConfig, TFServingClient

from .conftest import MODEL_BASE, MODEL_NAME, StandIn, free_port

pytestmark = pytest.mark.docker

CONFIG = """
model_config_list {
  config {
    name: "calculator"
    base_path: "/models/calculator"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
"""


def both_versions_available(target: str, timeout: float = 120) -> None:
    client = TFServingClient(ClientConfig(targets=(target,), model_name=MODEL_NAME))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            versions = {v.version: v.state for s in client.host_statuses() for v in s.versions}
            if versions == {1: "AVAILABLE", 2: "AVAILABLE"}:
                return
            time.sleep(0.5)
    finally:
        client.close()
    raise AssertionError(f"versions 1 and 2 not AVAILABLE on {target} in {timeout}s")


@pytest.fixture(scope="module")
def labelled_standin(standin_image, tmp_path_factory) -> Iterator[StandIn]:
    base = tmp_path_factory.mktemp("release-models")
    base.chmod(0o755)
    for version in (1, 2):
        shutil.copytree(MODEL_BASE / MODEL_NAME / "1", base / MODEL_NAME / str(version))
    (base / "models.config").write_text(CONFIG)
    standin = StandIn(f"webapp-test-release-{uuid.uuid4().hex[:8]}", free_port(), free_port())
    try:
        subprocess.run(
            [
                "docker", "run", "-d", "--init", "--name", standin.name,
                "-p", f"127.0.0.1:{standin.grpc_port}:8500",
                "-p", f"127.0.0.1:{standin.rest_port}:8501",
                "-v", f"{base}:/models:ro",
                standin_image,
                "--model_config_file=/models/models.config",
                "--allow_version_labels_for_unavailable_models=true",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        try:
            both_versions_available(standin.grpc_target)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{standin.logs()}") from None
        yield standin
    finally:
        standin.remove()


@pytest.fixture
def routing(settings, tmp_path, labelled_standin, monkeypatch):
    """Point the app at the stand-in; ``routing(**release)`` replaces the routing file and applies it."""
    settings.TFSP_TF_SERVING_TARGETS = [labelled_standin.grpc_target]
    settings.TFSP_TF_SERVING_REST_TARGETS = [labelled_standin.rest_target]
    settings.TFSP_TF_SERVING_PROTOCOL = "grpc"
    path = tmp_path / "routing.json"
    settings.TFSP_ROUTING_FILE = str(path)
    monkeypatch.setattr(serving, "_routing", None)

    def write(**release) -> None:
        staging = tmp_path / "routing.json.tmp"
        staging.write_text(json.dumps({"release": release}))
        staging.replace(path)
        serving._routing = None  # now, not within the second

    return write


def predict(client, a=1.5, b=2.25):
    body = {"operation": "add", "a": a, "b": b}
    return client.post("/api/v1/predict", body, content_type="application/json")


def shadow_counts() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value(
            "tfsp_web_shadow_requests_total", {"operation": "add", "outcome": outcome}
        )
        or 0.0
        for outcome in ("match", "mismatch", "error", "skipped")
    }


def test_canary_split_answers_from_both_versions(client, settings, routing):
    routing(stable_label="stable", canary_label="canary", canary_percent=50, shadow_percent=0)
    answers = []
    for _ in range(40):
        response = predict(client)
        assert response.status_code == 200, response.content
        answers.append(response.json())
    assert all(a["result"] == 3.75 for a in answers)
    pairs = Counter((a["version_label"], a["model_version"]) for a in answers)
    assert set(pairs) == {("stable", 1), ("canary", 2)}, pairs  # each label answered by its version
    # Over REST too (the path /labels/canary:predict; REST answers carry no version).
    settings.TFSP_TF_SERVING_PROTOCOL = "rest"
    routing(stable_label="stable", canary_label="canary", canary_percent=100, shadow_percent=0)
    body = predict(client).json()
    assert (body["result"], body["version_label"], body["model_version"]) == (3.75, "canary", None)


def test_shadow_to_the_canary_matches_and_users_see_stable_only(client, routing):
    routing(stable_label="stable", canary_label="canary", canary_percent=0, shadow_percent=100)
    before = shadow_counts()
    for index in range(10):
        response = predict(client, a=[index, 0.5], b=[1, 0.25])
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["version_label"], body["model_version"]) == ("stable", 1)
        assert body["result"] == [index + 1, 0.75]
    deadline = time.monotonic() + 10
    while sum(shadow_counts().values()) < sum(before.values()) + 10:
        assert time.monotonic() < deadline, "the shadow calls were not all counted"
        time.sleep(0.05)
    after = shadow_counts()
    assert {k: after[k] - before[k] for k in after} == {"match": 10, "mismatch": 0, "error": 0, "skipped": 0}


def test_label_unknown_to_the_server_is_a_503(client, routing):
    routing(stable_label="stable", canary_label="nope", canary_percent=100, shadow_percent=0)
    response = predict(client)
    assert response.status_code == 503
    assert "unavailable" in response.json()["error"]
    assert not any(h.ejected for h in serving.get_client().host_health())
