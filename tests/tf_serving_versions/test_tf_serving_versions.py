"""The tf_serving role's version arithmetic (plugins/filter/tf_serving_versions.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/tf_serving_versions.py"
_spec = importlib.util.spec_from_file_location("tf_serving_versions", PLUGIN)
tsv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tsv)


def status(*entries):
    """A GET /v1/models/<name> answer from (version, state[, error_code, message]) tuples."""
    return {
        "model_version_status": [
            {
                "version": str(entry[0]),
                "state": entry[1],
                "status": {
                    "error_code": entry[2] if len(entry) > 2 else "OK",
                    "error_message": "".join(entry[3:]),
                },
            }
            for entry in entries
        ]
    }


MODEL = {"name": "calculator", "source": "/src/calculator", "keep": 2, "num_versions": 1}


def test_version_numbers_ignore_non_integer_names():
    paths = ["/m/calculator/10", "/m/calculator/2/", "/m/calculator/tmp", "/m/calculator/1"]
    assert tsv.version_numbers(paths) == [1, 2, 10]


def test_quarantined_versions_parse_names_with_dashes():
    paths = [
        "/m/.quarantine/calculator-3-20260101T000000Z",
        "/m/.quarantine/my-model-1-4-20260101T000000Z",
        "/m/.quarantine/calculator-x-20260101T000000Z",
        "/m/.quarantine/other-5-20260101T000000Z",
    ]
    assert tsv.quarantined_versions(paths, "calculator") == [3]
    assert tsv.quarantined_versions(paths, "my-model-1") == [4]


def test_ship_newest_keep_versions():
    assert tsv.ship_versions(MODEL, [1, 2, 3]) == [2, 3]


def test_ship_adds_labelled_and_specific_versions():
    model = {**MODEL, "labels": {"stable": 1}, "specific_versions": [2]}
    assert tsv.ship_versions(model, [1, 2, 3, 4, 5]) == [1, 2, 4, 5]


def test_ship_explicit_versions():
    assert tsv.ship_versions({**MODEL, "versions": [1]}, [1, 2, 3]) == [1]


def test_ship_skips_quarantined_versions_when_choosing_the_newest():
    assert tsv.ship_versions(MODEL, [1, 2, 3], quarantined=[3]) == [1, 2]


def test_ship_refuses_a_named_version_that_is_quarantined():
    with pytest.raises(AnsibleFilterError, match=r"versions \[3\] are quarantined"):
        tsv.ship_versions({**MODEL, "labels": {"stable": 3}}, [1, 2, 3], quarantined=[3])


def test_ship_refuses_a_named_version_the_controller_lacks():
    with pytest.raises(AnsibleFilterError, match=r"versions \[7\] are not on the controller"):
        tsv.ship_versions({**MODEL, "specific_versions": [7]}, [1, 2])


@pytest.mark.parametrize(
    ("model", "on_host", "expected"),
    [
        (MODEL, [1, 2, 3], [3]),
        ({**MODEL, "num_versions": 2}, [1, 2, 3], [2, 3]),
        ({**MODEL, "version_policy": "all"}, [3, 1], [1, 3]),
        ({**MODEL, "version_policy": "specific", "specific_versions": [1]}, [1, 2, 3], [1]),
        (MODEL, [], []),
    ],
)
def test_expected_versions_follow_the_policy(model, on_host, expected):
    assert tsv.expected_versions(model, on_host) == expected


def test_expected_by_model_reads_find_results():
    results = [
        {"item": MODEL, "files": [{"path": "/m/calculator/1"}, {"path": "/m/calculator/2"}]},
        {"item": {"name": "empty"}, "files": []},
    ]
    assert tsv.expected_by_model(results) == {"calculator": [2], "empty": []}


def test_wait_over_when_every_expected_version_is_available():
    assert tsv.wait_over(status((1, "AVAILABLE"), (2, "AVAILABLE")), [1, 2])
    assert not tsv.wait_over(status((1, "AVAILABLE"), (2, "LOADING")), [1, 2])


def test_wait_over_at_once_when_an_expected_version_failed():
    answer = status((1, "AVAILABLE"), (2, "END", "DATA_LOSS", "Can't parse"))
    assert tsv.wait_over(answer, [2])
    assert tsv.failed_versions(answer, [2]) == [
        {
            "version": 2,
            "error_code": "DATA_LOSS",
            "error_message": "Can't parse",
            "error": "DATA_LOSS: Can't parse",
        }
    ]


def test_an_unloaded_version_is_no_failure():
    answer = status((1, "END"), (2, "AVAILABLE"))
    assert tsv.failed_versions(answer, [1, 2]) == []
    assert tsv.missing_versions(answer, [1, 2]) == [1]


def test_no_answer_is_not_the_end_of_the_wait():
    assert not tsv.wait_over(None, [1])
    assert not tsv.wait_over({"error": "Servable not found"}, [1])
    assert tsv.missing_versions(None, [1]) == [1]


def test_load_failures_and_quarantine_plan():
    results = [
        {"item": MODEL, "json": status((1, "AVAILABLE"), (2, "END", "DATA_LOSS", "bad"))},
        {"item": {"name": "other"}, "json": status((1, "AVAILABLE"))},
        {"skipped": True, "item": MODEL},
    ]
    failures = tsv.load_failures(results, {"calculator": [2], "other": [1]})
    plan = tsv.quarantine_plan(failures, "/srv/m", "20260102T030405Z")
    assert plan == [
        {
            "model": "calculator",
            "version": 2,
            "error_code": "DATA_LOSS",
            "error_message": "bad",
            "error": "DATA_LOSS: bad",
            "source": "/srv/m/calculator/2",
            "path": "/srv/m/.quarantine/calculator-2-20260102T030405Z",
        }
    ]
    assert tsv.quarantined_versions([plan[0]["path"]], "calculator") == [2]


#: The log of a server that exits at start-up because its newest version cannot load.
CRASH_LOG = [
    "2026-11-30 12:40:01,703 I standin tf_serving_standin.core] Loading servable version "
    "{name: calculator version: 3} from /models/calculator/3",
    "2026-11-30 12:40:01,705 E standin tf_serving_standin.core] Loading servable version "
    "{name: calculator version: 3} failed: DATA_LOSS: Can't parse /models/calculator/3/saved_model.pb",
    "E external/org_tensorflow/tensorflow/core/util/retrier.cc:40] Loading servable: "
    "{name: other version: 7} failed: NOT_FOUND: no such file",
    "2026-11-30 12:40:01,706 E standin tensorflow_model_server] Failed to start server. Error: UNKNOWN: "
    "Some models did not become available: calculator: DATA_LOSS: Can't parse",
]


def test_a_server_that_cannot_start_names_the_failed_version_in_its_log():
    failures = tsv.log_load_failures(CRASH_LOG, {"calculator": [3], "other": [7]})
    assert failures == [
        {
            "model": "calculator",
            "version": 3,
            "error_code": "DATA_LOSS",
            "error_message": "Can't parse /models/calculator/3/saved_model.pb",
            "error": "DATA_LOSS: Can't parse /models/calculator/3/saved_model.pb",
        },
        {
            "model": "other",
            "version": 7,
            "error_code": "NOT_FOUND",
            "error_message": "no such file",
            "error": "NOT_FOUND: no such file",
        },
    ]


def test_log_failures_move_only_versions_the_host_should_serve():
    # Version 3 is not expected (an old line, a version already gone): never moved on a log line.
    assert tsv.log_load_failures(CRASH_LOG, {"calculator": [2]}) == []
    assert tsv.log_load_failures(None, {"calculator": [3]}) == []
    assert (
        tsv.log_load_failures(["Loading servable version {name: calculator version: 3}"], {"calculator": [3]})
        == []
    )


def test_failures_from_the_status_and_the_log_are_merged_once_each():
    from_status = [{"model": "calculator", "version": 3, "error": "DATA_LOSS: from the status"}]
    from_log = tsv.log_load_failures(CRASH_LOG, {"calculator": [3], "other": [7]})
    merged = tsv.merge_failures(from_status, from_log)
    assert [(f["model"], f["version"]) for f in merged] == [("calculator", 3), ("other", 7)]
    assert merged[0]["error"] == "DATA_LOSS: from the status"


def test_quarantine_plan_refuses_a_stamp_it_could_not_read_back():
    with pytest.raises(AnsibleFilterError):
        tsv.quarantine_plan([], "/srv/m", "2026-01-02")


def test_label_serves_only_its_version_available():
    assert tsv.label_serves(status((2, "AVAILABLE")), 2)
    assert not tsv.label_serves(status((1, "AVAILABLE")), 2)
    assert not tsv.label_serves(status((2, "LOADING")), 2)
    assert not tsv.label_serves(None, 2)


def test_safe_labels_wait_for_their_target():
    model = {**MODEL, "labels": {"stable": 2, "canary": 3, "new": 4}}
    label_results = [
        {"item": {"key": "stable", "value": 2}, "json": status((1, "AVAILABLE"))},
        {"item": {"key": "canary", "value": 3}, "json": status((3, "AVAILABLE"))},
        {"item": {"key": "new", "value": 4}, "json": {"error": "not found"}},
    ]
    server = status((1, "AVAILABLE"), (2, "LOADING"), (3, "AVAILABLE"))
    assert tsv.safe_labels(model, server, label_results) == {"stable": 1, "canary": 3}


def test_label_targets_and_final_labels():
    models = [{**MODEL, "labels": {"stable": "1"}}, {"name": "other"}]
    assert tsv.label_targets(models) == [{"model": "calculator", "key": "stable", "value": 1}]
    assert tsv.final_labels(models) == {"calculator": {"stable": 1}, "other": {}}


def test_retire_beyond_keep_but_never_labelled_or_served():
    model = {**MODEL, "labels": {"stable": 1}}
    assert tsv.retire_versions(model, [1, 2, 3, 4], [4]) == [2]
    assert tsv.retire_versions(MODEL, [1, 2, 3], [1]) == []
    assert tsv.retire_versions(MODEL, [1, 2, 3, 4], [1]) == [2]


def test_rollout_of_the_newest_version_changes_nothing():
    assert tsv.rollout_model(MODEL, "3", "", [1, 2, 3]) == MODEL


def test_rollback_pins_the_version():
    entry = tsv.rollout_model(MODEL, 1, "", [1, 2, 3])
    assert entry["version_policy"] == "specific"
    assert entry["specific_versions"] == [1]
    assert tsv.ship_versions(entry, [1, 2, 3]) == [1, 2, 3]
    assert tsv.expected_versions(entry, [1, 2, 3]) == [1]
    assert tsv.retire_versions(entry, [1, 2, 3], [1]) == []


def test_rollback_of_explicit_versions_ships_the_pinned_one():
    entry = tsv.rollout_model({**MODEL, "versions": [3]}, 1, "", [1, 2, 3])
    assert entry["versions"] == [1, 3]


def test_rollout_models_changes_only_the_named_model_in_place():
    other = {"name": "other", "source": "/src/other"}
    models = tsv.rollout_models([other, MODEL], "calculator", 1, "", [1, 2])
    assert [m["name"] for m in models] == ["other", "calculator"]
    assert models[0] == other
    assert models[1]["specific_versions"] == [1]


def test_rollout_with_a_label_moves_the_label():
    entry = tsv.rollout_model({**MODEL, "labels": {"stable": 1}}, 2, "stable", [1, 2])
    assert entry["labels"] == {"stable": 2}
    assert "version_policy" not in entry


@pytest.mark.parametrize(
    ("model", "version", "label", "have", "problem"),
    [
        ("nope", 1, "", [1], "model 'nope' is not in tf_serving_models"),
        ("calculator", "1.5", "", [1], "must be a non-negative integer, not '1.5'"),
        ("calculator", "two", "", [1], "must be a non-negative integer"),
        ("calculator", None, "", [1], "give the version"),
        (
            "calculator",
            9,
            "",
            [1, 2],
            "version 9 is not on the controller in /src/calculator",
        ),
        ("calculator", 1, "bad-label", [1], "label 'bad-label' must match"),
    ],
)
def test_rollout_problems_are_one_line_each(model, version, label, have, problem):
    problems = tsv.rollout_problems([MODEL], model, version, label, have)
    assert len(problems) == 1
    assert problem in problems[0]


def test_a_good_rollout_has_no_problem():
    assert tsv.rollout_problems([MODEL], "calculator", "2", "stable", [1, 2]) == []


@pytest.mark.parametrize("waves", [[1, "25%"], 1, "1", ["50%"], [1, 2, "10%"]])
def test_sensible_waves(waves):
    assert tsv.wave_problems(waves, 0, 10) == []


@pytest.mark.parametrize(
    ("waves", "fail", "hosts", "problem"),
    [
        ([], 0, 4, "empty"),
        ([0], 0, 4, "at least 1 host"),
        (["-1"], 0, 4, "neither a host count"),
        (["abc"], 0, 4, "neither a host count"),
        ([True], 0, 4, "neither a host count"),
        (["0%"], 0, 4, "above 0 and at most 100"),
        (["150%"], 0, 4, "above 0 and at most 100"),
        (["100%"], 0, 4, "takes all 4 hosts of the tier down at once"),
        ([1, 4], 0, 4, "takes all 4"),
        ([1], "ten", 4, "max_fail_percentage 'ten'"),
        ([1], 101, 4, "max_fail_percentage 101"),
    ],
)
def test_nonsense_waves(waves, fail, hosts, problem):
    problems = tsv.wave_problems(waves, fail, hosts)
    assert len(problems) == 1
    assert problem in problems[0]


def test_a_whole_tier_wave_when_allowed():
    assert tsv.wave_problems(["100%"], 0, 4, allow_whole_tier=True) == []
    assert tsv.wave_problems([4], 0, 4, allow_whole_tier="false") != []


def test_one_host_may_go_in_one_wave():
    assert tsv.wave_problems(["100%"], 0, 1) == []


def test_every_filter_is_exported():
    names = tsv.FilterModule().filters()
    assert all(name.startswith("tf_serving_") for name in names)
    assert tsv.wave_problems in names.values()
