"""Progressive delivery's rules (plugins/plugin_utils/release.py): the checks that stop a release
before any host is touched, the model config of each phase, the PromQL, the figures read from
Prometheus's answers and the decision. The play itself runs in the full-stack scenario
(molecule/stack/tests/test_release.py)."""

from __future__ import annotations

import base64
import json

import pytest
from ansible_collections.tfsp.serving.plugins.plugin_utils import release

MODELS = [{"name": "calculator", "source": "/x", "keep": 2, "version_policy": "latest", "num_versions": 1}]
REQUEST = {
    "action": "run",
    "model": "calculator",
    "version": "3",
    "canary_percent": 10,
    "shadow_percent": 100,
    "tolerance": 1e-6,
    "window_seconds": 60,
    "thresholds": {},
    "stable_label": "stable",
    "canary_label": "canary",
}


def serving(available=(2,), stable=None, canary=None, error=None):
    return {"available": list(available), "labels": {"stable": stable, "canary": canary}, "error": error}


def context(**changes):
    base = {
        "models": MODELS,
        "controller_versions": ["1", "2", "3"],
        "served": {"tfs1": serving(), "tfs2": serving()},
        "unreachable": [],
        "routing": {"web1": None, "web2": None},
        "prometheus": {"error": None, "web_series": 12},
        "scrape_interval": "5s",
    }
    base.update(changes)
    return base


def test_a_good_request_plans_stable_and_canary():
    planned = release.plan(REQUEST, context())
    assert planned["problems"] == []
    assert (planned["stable"], planned["canary"]) == (2, 3)
    assert (planned["canary_percent"], planned["shadow_percent"]) == (10.0, 100.0)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"canary_percent": 101}, "release_canary_percent must be a number from 0 to 100"),
        ({"canary_percent": -1}, "release_canary_percent must be a number from 0 to 100"),
        ({"shadow_percent": "lots"}, "release_shadow_percent must be a number from 0 to 100"),
        ({"canary_percent": 0, "shadow_percent": 0}, "nothing would reach the canary"),
        (
            {"window_seconds": 10},
            "release_window_seconds 10 cannot be evaluated: Prometheus scrapes every 5 s",
        ),
        ({"window_seconds": "soon"}, "release_window_seconds must be a number of seconds"),
        ({"thresholds": {"max_p99": 3}}, "unknown threshold 'max_p99'"),
        ({"thresholds": {"max_error_ratio": -1}}, "threshold max_error_ratio must be a number of 0 or more"),
        ({"thresholds": {"latency_quantile": 1.5}}, "latency_quantile must be between 0 and 1"),
        ({"canary_label": "stable"}, "the stable and canary labels are both 'stable'"),
        ({"stable_label": "st able"}, "version labels must match"),
        ({"action": "yolo"}, "release_action must be one of run, start, decide, promote, abort"),
        ({"version": "2"}, "is not the newest on the controller"),
        ({"version": "9"}, "calculator version 9 is not on the controller"),
        ({"version": None}, "release_version must be a version number"),
        ({"model": "other"}, "model 'other' is not in tf_serving_models"),
    ],
)
def test_bad_requests_stop_with_one_line(changes, says):
    problems = release.plan({**REQUEST, **changes}, context())["problems"]
    assert problems, changes
    assert says in " | ".join(problems)


def test_canary_equal_to_stable_is_refused():
    served = {"tfs1": serving((3,)), "tfs2": serving((3,))}
    problems = release.plan(REQUEST, context(served=served))["problems"]
    assert problems == [
        "calculator version 3 is the version the hosts serve now (stable): nothing to release"
    ]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"prometheus": {"error": "Connection refused", "web_series": 0}}, "Prometheus did not answer"),
        (
            {"prometheus": {"error": None, "web_series": 0}},
            "Prometheus has no tfsp_web_upstream_duration_seconds",
        ),
        (
            {"served": {"tfs1": serving((2,)), "tfs2": serving((1,))}},
            "must all serve one and the same version",
        ),
        (
            {"served": {"tfs1": serving((1, 2)), "tfs2": serving((2,))}},
            "must all serve one and the same version",
        ),
        (
            {"served": {"tfs1": serving(error="no answer"), "tfs2": serving()}},
            "did not answer: tfs1: no answer",
        ),
        ({"unreachable": ["tfs2"]}, "serving hosts unreachable: tfs2"),
        ({"models": [{**MODELS[0], "version_policy": "specific"}]}, "is not served by the latest policy"),
        ({"routing": {"web1": {"canary_percent": 5}, "web2": None}}, "a release is in progress"),
        ({"served": {"tfs1": serving((2, 3), 2, 3), "tfs2": serving()}}, "a release is in progress"),
    ],
)
def test_hosts_and_data_that_cannot_carry_a_release(changes, says):
    problems = release.plan(REQUEST, context(**changes))["problems"]
    assert says in " | ".join(problems), problems


def test_later_actions_find_the_release_from_the_labels_and_the_routing():
    served = {"tfs1": serving((2, 3), 2, 3), "tfs2": serving((2, 3), 2, 3)}
    routing = {
        "web1": {"canary_percent": 10, "shadow_percent": 50},
        "web2": {"canary_percent": 10, "shadow_percent": 50},
    }
    for action in ("decide", "promote", "abort"):
        planned = release.plan(
            {**REQUEST, "action": action, "version": None}, context(served=served, routing=routing)
        )
        assert planned["problems"] == [], action
        assert (planned["stable"], planned["canary"], planned["shadow_percent"]) == (2, 3, 50.0)


def test_later_actions_need_a_release_and_promotion_needs_the_canary_everywhere():
    nothing = release.plan({**REQUEST, "action": "abort"}, context())["problems"]
    assert nothing == ["no release is in progress: nothing to abort"]
    half = {"tfs1": serving((2, 3), 2, 3), "tfs2": serving((2,), 2, None)}
    routing = {"web1": {"canary_percent": 0}, "web2": {"canary_percent": 0}}
    promote = release.plan({**REQUEST, "action": "promote"}, context(served=half, routing=routing))
    assert "the canary is not loaded on tfs2: it cannot be promoted" in promote["problems"][0]
    abort = release.plan({**REQUEST, "action": "abort"}, context(served=half, routing=routing))
    assert abort["problems"] == []
    assert abort["canary"] == 3


def test_phase_models_label_and_pin_without_touching_other_models():
    models = [*MODELS, {"name": "other", "source": "/y"}]
    pin, canary, promote, inventory = (
        release.phase_models(models, "calculator", phase, 2, 3)
        for phase in ("pin", "canary", "promote", "inventory")
    )
    assert pin[0]["version_policy"] == "specific"
    assert pin[0]["specific_versions"] == [2]
    assert pin[0]["versions"] == [2]
    assert pin[0]["labels"] == {"stable": 2}
    assert "num_versions" not in pin[0]
    assert canary[0]["specific_versions"] == [2, 3]
    assert canary[0]["labels"] == {"stable": 2, "canary": 3}
    assert promote[0]["specific_versions"] == [2, 3]
    assert promote[0]["labels"] == {"stable": 3}
    assert inventory == models
    assert all(phase[1] == models[1] for phase in (pin, canary, promote))
    with pytest.raises(ValueError, match="unknown release phase"):
        release.phase_models(models, "calculator", "later", 2, 3)
    with pytest.raises(ValueError, match="needs both versions"):
        release.phase_models(models, "calculator", "canary", 2, None)


def test_routing_phases():
    assert release.routing(REQUEST, "off") is None
    assert release.routing(REQUEST, "stable")["canary_percent"] == 0
    assert release.routing(REQUEST, "stable")["shadow_percent"] == 0
    split = release.routing(REQUEST, "split")
    assert (split["canary_percent"], split["shadow_percent"], split["canary_label"]) == (
        10.0,
        100.0,
        "canary",
    )


def test_queries_select_the_labels_and_the_window():
    queries = release.queries("60", "0.99", "stable", "canary")  # extra vars arrive as text
    assert (
        queries["stable_ok"]
        == 'sum(increase(tfsp_web_upstream_duration_seconds_count{version_label="stable"}[60s]))'
    )
    assert "histogram_quantile(0.99" in queries["canary_latency"]
    assert "tfsp_web_shadow_duration_seconds_bucket[60s]" in queries["canary_latency"]
    assert queries["shadow"] == "sum by (outcome) (increase(tfsp_web_shadow_requests_total[60s]))"


def answer(*samples):
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [0, v]} for m, v in samples]},
    }


ANSWERS = {
    "stable_ok": answer(({}, "990")),
    "stable_errors": answer(({}, "10")),
    "canary_ok": answer(({}, "99")),
    "canary_errors": answer(({}, "1")),
    "shadow": answer(
        ({"outcome": "match"}, "880"), ({"outcome": "mismatch"}, "0"), ({"outcome": "skipped"}, "3")
    ),
    "stable_latency": answer(({}, "0.012")),
    "canary_latency": answer(({}, "0.015")),
}


def test_figures_from_prometheus_answers():
    found = release.figures(ANSWERS)
    assert found["stable_calls"] == 1000
    assert found["stable_error_ratio"] == 0.01
    assert found["canary_calls"] == 980
    assert found["canary_split_calls"] == 100
    assert found["canary_error_ratio"] == pytest.approx(1 / 980, abs=1e-6)
    assert (found["stable_latency_ms"], found["canary_latency_ms"]) == (12.0, 15.0)
    assert (found["shadow_compared"], found["mismatch_ratio"], found["shadow_skipped"]) == (880, 0.0, 3)
    empty = release.figures({**ANSWERS, "canary_latency": answer(), "shadow": answer()})
    assert empty["canary_latency_ms"] is None
    assert empty["mismatch_ratio"] is None
    broken = release.figures_from_results([{"item": {"key": "stable_ok"}, "json": {"status": "error"}}])
    assert "could not be read from Prometheus" in broken["error"]


def test_a_healthy_canary_is_promoted():
    decision = release.decide(release.figures(ANSWERS), {}, 100)
    assert decision["decision"] == "promote"
    assert decision["by"] == "metrics"
    assert all(check["ok"] for check in decision["checks"])
    assert decision["reasons"] == ["every check passed"]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"shadow": answer(({"outcome": "match"}, "600"), ({"outcome": "mismatch"}, "300"))},
            "shadow mismatch ratio",
        ),
        ({"canary_latency": answer(({}, "0.4"))}, "canary latency p99 (ms): 400.0 (limit 250)"),
        ({"canary_latency": answer(({}, "0.1"))}, "canary latency over stable's (ms): 88.0 (limit 50)"),
        ({"canary_errors": answer(({}, "40"))}, "canary error ratio"),
        (
            {"canary_ok": answer(), "canary_errors": answer(), "shadow": answer()},
            "canary calls: 0 (limit 50)",
        ),
        ({"shadow": answer(({"outcome": "skipped"}, "9"))}, "shadow mismatch ratio: no data"),
    ],
)
def test_a_bad_canary_is_rolled_back_with_its_reason(changes, says):
    decision = release.decide(release.figures({**ANSWERS, **changes}), {}, 100)
    assert decision["decision"] == "rollback"
    assert says in " | ".join(decision["reasons"])


def test_no_figures_roll_back_and_the_operator_decides_regardless():
    assert release.decide({"error": "down"}, {}, 0)["decision"] == "rollback"
    manual = release.decide({"error": "down"}, {}, 0, "promote")
    assert (manual["decision"], manual["by"], manual["reasons"][0]) == (
        "promote",
        "operator",
        "release_action=promote",
    )
    assert release.decide(release.figures(ANSWERS), {}, 100, "abort")["decision"] == "rollback"
    lenient = release.decide(
        release.figures({**ANSWERS, "canary_latency": answer(({}, "0.4"))}),
        {"max_latency_ms": 500, "max_latency_over_stable_ms": 500},
        100,
    )
    assert lenient["decision"] == "promote"


def test_served_state_sums_up_a_hosts_containers():
    def status(*versions, state="AVAILABLE"):
        return {"json": {"model_version_status": [{"version": str(v), "state": state} for v in versions]}}

    two = [status(2, 3), status(2, 3)]
    labels = [
        {**status(2), "item": [{"name": "tf-serving"}, "stable"]},
        {"json": {"error": "Unrecognized"}, "item": [{}, "canary"]},
    ]
    assert release.served_state(two, labels) == {
        "available": [2, 3],
        "labels": {"stable": 2, "canary": None},
        "error": None,
    }
    assert "different versions" in release.served_state([status(2), status(3)], [])["error"]
    assert "no model status" in release.served_state([{"msg": "Connection refused"}], [])["error"]


def test_routing_state_and_prometheus_probe():
    def slurped(host, document):
        return {"item": host, "content": base64.b64encode(document.encode()).decode()}

    state = release.routing_state(
        [
            slurped("w1", "{}"),
            slurped("w2", json.dumps({"release": {"canary_percent": 5}})),
            {"item": "w3", "failed": True},
            slurped("w4", "{"),
        ]
    )
    assert state == {"w1": None, "w2": {"canary_percent": 5}, "w3": None, "w4": "unreadable"}
    assert release.prometheus_probe({"json": answer(({}, "4"))}) == {"error": None, "web_series": 4}
    assert (
        release.prometheus_probe({"msg": "Connection refused", "status": -1})["error"] == "Connection refused"
    )
    assert release.duration_seconds("5s") == 5
    assert release.duration_seconds("1m") == 60
    assert release.duration_seconds("x") is None
