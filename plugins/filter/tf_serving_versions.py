"""Version arithmetic of the tf_serving role, as Jinja filters.

Which versions of a model to ship to a host, which the server must report
AVAILABLE, where each label may point while versions load, which versions to
retire, which versions failed to load (and go to quarantine), how a rollout or
rollback request changes a model's entry, and whether a wave spec makes sense.
The task files only gather facts (``find``, REST status) and call modules with
what these functions return.

Vocabulary:

* a *model* is one entry of ``tf_serving_models`` (name, source, versions,
  keep, version_policy, num_versions, specific_versions, labels);
* a *status* is TF Serving's answer to ``GET /v1/models/<name>``:
  ``{"model_version_status": [{"version": "2", "state": "AVAILABLE",
  "status": {"error_code": "OK", "error_message": ""}}]}``;
* a *quarantined* version failed to load on a host and was moved to
  ``<model_base>/.quarantine/<model>-<version>-<UTC timestamp>``; it is never
  shipped to that host again until the operator deletes that directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

DEFAULT_KEEP = 2
DEFAULT_NUM_VERSIONS = 1
QUARANTINE_NAME = re.compile(r"^(?P<model>.+)-(?P<version>[0-9]+)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)$")
WAVE_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")
INTEGER = re.compile(r"^[0-9]+$")


def _ints(values: Iterable[Any] | None) -> list[int]:
    return sorted({int(value) for value in values or []})


def version_numbers(paths: Iterable[str]) -> list[int]:
    """Version numbers from paths whose last component is an integer, ascending."""
    names = (str(path).rstrip("/").rsplit("/", 1)[-1] for path in paths)
    return sorted({int(name) for name in names if INTEGER.match(name)})


def _pinned(model: Mapping[str, Any]) -> list[int]:
    """Versions the model names itself: labelled and specifically served ones."""
    labels = model.get("labels") or {}
    return _ints(list(labels.values()) + list(model.get("specific_versions") or []))


def quarantined_versions(paths: Iterable[str], model_name: str) -> list[int]:
    """Versions of ``model_name`` found in the quarantine directory listing ``paths``."""
    found = []
    for path in paths:
        match = QUARANTINE_NAME.match(str(path).rstrip("/").rsplit("/", 1)[-1])
        if match and match["model"] == model_name:
            found.append(int(match["version"]))
    return sorted(set(found))


def ship_versions(
    model: Mapping[str, Any], controller_versions: Iterable[Any], quarantined: Iterable[Any] = ()
) -> list[int]:
    """Versions to put on the host.

    ``versions`` when the model lists them; otherwise the newest ``keep``
    versions on the controller that are not quarantined on this host. Labelled
    and specifically served versions are always added (shipping more than the
    host keeps would re-ship on every run what prune removes). A version the
    model names explicitly must be on the controller and not quarantined:
    anything else is an error, never a silent skip.
    """
    name = model["name"]
    on_controller = _ints(controller_versions)
    bad = set(_ints(quarantined))
    if model.get("versions") is not None:
        wanted = _ints(model["versions"])
    else:
        usable = [v for v in reversed(on_controller) if v not in bad]
        wanted = usable[: int(model.get("keep", DEFAULT_KEEP))]
    wanted = sorted(set(wanted) | set(_pinned(model)))
    missing = [v for v in wanted if v not in on_controller]
    if missing:
        raise AnsibleFilterError(
            f"tf_serving: {name} versions {missing} are not on the controller in {model.get('source')}"
        )
    blocked = [v for v in wanted if v in bad]
    if blocked:
        raise AnsibleFilterError(
            f"tf_serving: {name} versions {blocked} are quarantined on this host (they failed to load): "
            "publish a fixed export under a new version number, or delete "
            f"<model_base>/.quarantine/{name}-<version>-* on the host to try them again"
        )
    return wanted


def expected_versions(model: Mapping[str, Any], host_versions: Iterable[Any]) -> list[int]:
    """Versions the server must report AVAILABLE, given the versions on the host."""
    on_host = _ints(host_versions)
    policy = model.get("version_policy") or "latest"
    if policy == "all":
        return on_host
    if policy == "specific":
        return _ints(model.get("specific_versions"))
    return sorted(on_host[::-1][: int(model.get("num_versions", DEFAULT_NUM_VERSIONS))])


def expected_by_model(find_results: Iterable[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Expected versions per model name, from a ``find`` looped over the models (``item`` is the model)."""
    return {
        result["item"]["name"]: expected_versions(
            result["item"], version_numbers(f["path"] for f in result.get("files") or [])
        )
        for result in find_results
    }


def _entries(status: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list((status or {}).get("model_version_status") or [])


def available_versions(status: Mapping[str, Any] | None) -> list[int]:
    """Versions the status reports AVAILABLE."""
    return _ints(entry["version"] for entry in _entries(status) if entry.get("state") == "AVAILABLE")


def failed_versions(status: Mapping[str, Any] | None, expected: Iterable[Any]) -> list[dict[str, Any]]:
    """Expected versions that ended with an error: ``[{version, error_code, error_message, error}]``.

    TF Serving does not retry a version that failed while it stays aspired:
    state END with a non-OK status is final, so the wait can stop at once.
    """
    wanted = set(_ints(expected))
    failed = []
    for entry in _entries(status):
        code = (entry.get("status") or {}).get("error_code", "OK")
        if int(entry["version"]) in wanted and entry.get("state") == "END" and code != "OK":
            message = (entry.get("status") or {}).get("error_message", "")
            failed.append(
                {
                    "version": int(entry["version"]),
                    "error_code": code,
                    "error_message": message,
                    "error": f"{code}: {message}",
                }
            )
    return sorted(failed, key=lambda item: item["version"])


def load_failures(
    status_results: Iterable[Mapping[str, Any]], expected: Mapping[str, Iterable[Any]]
) -> list[dict[str, Any]]:
    """Failed versions of every model: ``[{model, version, error_code, error_message}]``.

    ``status_results`` are the ``uri`` results of ``GET /v1/models/<name>``
    looped over the models (``item`` is the model); skipped ones are ignored.
    """
    failures = []
    for result in status_results:
        if result.get("skipped") or "item" not in result:
            continue
        name = result["item"]["name"]
        for failure in failed_versions(result.get("json"), expected.get(name, [])):
            failures.append({"model": name, **failure})
    return failures


#: A failed load in the server's log: TF Serving writes "Loading servable: {name: m version: 3}
#: failed: <status>" (the stand-in the same ServableId with "Loading servable version"). At start-up
#: such a failure ends the process ("Some models did not become available"), so the log is all
#: that tells which version to move aside while the server cannot answer.
_LOG_FAILURE = re.compile(r"\{name: (?P<model>[^ ]+) version: (?P<version>[0-9]+)\} failed: (?P<status>.*)$")


def log_load_failures(lines: Iterable[str], expected: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """Expected versions whose load failed, read from the server's log: same shape as load_failures.

    Only versions the host is meant to serve count (a log line never moves anything else), once
    each, with the latest message.
    """
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for line in lines or []:
        match = _LOG_FAILURE.search(str(line).rstrip())
        if not match:
            continue
        model, version = match["model"], int(match["version"])
        if version not in _ints(expected.get(model, [])):
            continue
        code, _sep, message = match["status"].partition(": ")
        if not message or not re.match(r"^[A-Za-z_ ]+$", code):
            code, message = "UNKNOWN", match["status"]
        found[(model, version)] = {
            "model": model,
            "version": version,
            "error_code": code,
            "error_message": message,
            "error": match["status"],
        }
    return [found[key] for key in sorted(found)]


def merge_failures(*lists: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Failures of several sources, one per model and version (the first source wins)."""
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for failures in lists:
        for failure in failures or []:
            merged.setdefault((failure["model"], int(failure["version"])), dict(failure))
    return [merged[key] for key in sorted(merged)]


def quarantine_plan(
    failures: Iterable[Mapping[str, Any]], model_base: str, stamp: str
) -> list[dict[str, Any]]:
    """Each failure with the ``path`` its version moves to (``stamp``: UTC, ``%Y%m%dT%H%M%SZ``)."""
    if not re.match(r"^[0-9]{8}T[0-9]{6}Z$", stamp):
        raise AnsibleFilterError(f"tf_serving: quarantine stamp {stamp!r} is not %Y%m%dT%H%M%SZ")
    return [
        {
            **failure,
            "source": f"{model_base}/{failure['model']}/{failure['version']}",
            "path": f"{model_base}/.quarantine/{failure['model']}-{failure['version']}-{stamp}",
        }
        for failure in failures
    ]


def missing_versions(status: Mapping[str, Any] | None, expected: Iterable[Any]) -> list[int]:
    """Expected versions not AVAILABLE yet."""
    return sorted(set(_ints(expected)) - set(available_versions(status)))


def wait_over(status: Mapping[str, Any] | None, expected: Iterable[Any]) -> bool:
    """Whether waiting can stop: every expected version AVAILABLE, or one failed for good."""
    if status is None or "model_version_status" not in status:
        return False
    return not missing_versions(status, expected) or bool(failed_versions(status, expected))


def label_serves(status: Mapping[str, Any] | None, version: Any) -> bool:
    """Whether a label's status (``GET .../labels/<label>``) is ``version`` AVAILABLE."""
    entries = _entries(status)
    return bool(entries) and int(entries[0]["version"]) == int(version) and entries[0]["state"] == "AVAILABLE"


def safe_labels(
    model: Mapping[str, Any], status: Mapping[str, Any] | None, label_results: Iterable[Any]
) -> dict:
    """Labels that can be written now, while the targets may still be loading.

    TF Serving refuses a config whose label points at a version that is not
    loaded. Per label: its target if that is AVAILABLE now, else the AVAILABLE
    version it points at now, else no label (added once the target loads).
    ``label_results`` are the ``uri`` results of ``GET .../labels/<label>``,
    each with ``item.key`` (the label).
    """
    available = set(available_versions(status))
    current = {}
    for result in label_results or []:
        entries = _entries(result.get("json"))
        if entries and entries[0].get("state") == "AVAILABLE":
            current[result["item"]["key"]] = int(entries[0]["version"])
    safe = {}
    for label, target in (model.get("labels") or {}).items():
        if int(target) in available:
            safe[label] = int(target)
        elif label in current:
            safe[label] = current[label]
    return safe


def label_targets(models: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every (model, label, version) the final config sets: ``[{model, key, value}]``."""
    return [
        {"model": model["name"], "key": label, "value": int(version)}
        for model in models
        for label, version in sorted((model.get("labels") or {}).items())
    ]


def final_labels(models: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Labels per model name, every label at its target."""
    return {m["name"]: {k: int(v) for k, v in (m.get("labels") or {}).items()} for m in models}


def retire_versions(
    model: Mapping[str, Any], host_versions: Iterable[Any], expected: Iterable[Any]
) -> list[int]:
    """Versions to remove from the host: beyond the newest ``keep``, never labelled or served ones."""
    newest_first = _ints(host_versions)[::-1]
    protected = set(_pinned(model)) | set(_ints(expected))
    beyond = newest_first[int(model.get("keep", DEFAULT_KEEP)) :]
    return sorted(v for v in beyond if v not in protected)


def rollout_model(
    model: Mapping[str, Any], version: Any, label: str = "", controller_versions: Iterable[Any] = ()
) -> dict[str, Any]:
    """The model entry that makes a host serve ``version`` (a rollout or a rollback).

    With a label: the label moves to ``version``; the policy is unchanged (the
    version must be one the policy loads, as for any label). Without a label:
    the newest version on the controller under the ``latest`` policy is the
    ordinary rollout and changes nothing; any other version is pinned with the
    ``specific`` policy for this run — that is a rollback (or a forward roll
    past the newest of ``num_versions``), which lasts until the next run that
    applies the inventory as it is.
    """
    version = int(version)
    entry = dict(model)
    if label:
        entry["labels"] = {**(model.get("labels") or {}), label: version}
        return entry
    on_controller = _ints(controller_versions)
    latest = (model.get("version_policy") or "latest") == "latest"
    if latest and on_controller and version == on_controller[-1] and model.get("versions") is None:
        return entry
    entry["version_policy"] = "specific"
    entry["specific_versions"] = [version]
    if model.get("versions") is not None:
        entry["versions"] = sorted(set(_ints(model["versions"])) | {version})
    return entry


def rollout_models(
    models: Iterable[Mapping[str, Any]],
    model_name: str,
    version: Any,
    label: str = "",
    controller_versions: Iterable[Any] = (),
) -> list[dict[str, Any]]:
    """``tf_serving_models`` with ``model_name``'s entry changed by :func:`rollout_model`, in place."""
    return [
        rollout_model(model, version, label, controller_versions)
        if model["name"] == model_name
        else dict(model)
        for model in models
    ]


def rollout_problems(
    models: Iterable[Mapping[str, Any]],
    model_name: Any,
    version: Any,
    label: Any = "",
    controller_versions: Iterable[Any] | None = None,
) -> list[str]:
    """What is wrong with a rollout request (empty when it can go ahead).

    ``controller_versions`` is None when the model's source could not be read.
    """
    names = [m["name"] for m in models]
    if model_name not in names:
        return [f"model {model_name!r} is not in tf_serving_models (known: {', '.join(names) or 'none'})"]
    if version is None or str(version).strip() == "":
        return ["give the version to roll out or back to as -e tf_serving_rollout_version=N"]
    if not INTEGER.match(str(version).strip()):
        return [f"tf_serving_rollout_version must be a non-negative integer, not {version!r}"]
    problems = []
    if label and not re.match(r"^[A-Za-z0-9_]+$", str(label)):
        problems.append(f"label {label!r} must match [A-Za-z0-9_]+")
    model = next(m for m in models if m["name"] == model_name)
    have = _ints(controller_versions or [])
    if int(version) not in have:
        problems.append(
            f"{model_name} version {int(version)} is not on the controller in {model.get('source')}"
            f" (it has {have or 'no versions'})"
        )
    return problems


def wave_problems(
    waves: Any, max_fail_percentage: Any = 0, host_count: Any = 0, allow_whole_tier: Any = False
) -> list[str]:
    """What is wrong with a ``serial`` wave spec (empty when it makes sense).

    A wave is a positive integer or a percentage in (0, 100]; the spec is one
    wave or a list of them. With more than one host, no wave may take every
    host at once (that would stop the whole tier) unless ``allow_whole_tier``
    (a first install, a maintenance window). ``max_fail_percentage`` is an
    integer in [0, 100].
    """
    problems = []
    if str(allow_whole_tier).lower() in ("true", "yes", "1"):
        host_count = 0
    spec = waves if isinstance(waves, list) else [waves]
    if not spec:
        problems.append("the wave list is empty")
    hosts = int(host_count or 0)
    for wave in spec:
        text = str(wave).strip()
        percent = WAVE_PERCENT.match(text)
        if isinstance(wave, bool) or not (INTEGER.match(text) or percent):
            problems.append(f"wave {wave!r} is neither a host count (1, 2, ...) nor a percentage ('25%')")
            continue
        if percent:
            share = float(percent[1])
            if not 0 < share <= 100:
                problems.append(f"wave {wave!r} must be a percentage above 0 and at most 100")
            elif hosts > 1 and share >= 100:
                problems.append(f"wave {wave!r} takes all {hosts} hosts of the tier down at once")
        elif int(text) < 1:
            problems.append(f"wave {wave!r} must be at least 1 host")
        elif hosts > 1 and int(text) >= hosts:
            problems.append(f"wave {wave!r} takes all {hosts} hosts of the tier down at once")
    if not INTEGER.match(str(max_fail_percentage).strip()) or int(str(max_fail_percentage).strip()) > 100:
        problems.append(f"max_fail_percentage {max_fail_percentage!r} must be an integer from 0 to 100")
    return problems


class FilterModule:
    """Filters of the tf_serving role (see the module docstring)."""

    def filters(self) -> dict:
        return {
            "tf_serving_version_numbers": version_numbers,
            "tf_serving_quarantined_versions": quarantined_versions,
            "tf_serving_ship_versions": ship_versions,
            "tf_serving_expected_versions": expected_versions,
            "tf_serving_expected_by_model": expected_by_model,
            "tf_serving_load_failures": load_failures,
            "tf_serving_log_load_failures": log_load_failures,
            "tf_serving_merge_failures": merge_failures,
            "tf_serving_quarantine_plan": quarantine_plan,
            "tf_serving_available_versions": available_versions,
            "tf_serving_failed_versions": failed_versions,
            "tf_serving_missing_versions": missing_versions,
            "tf_serving_wait_over": wait_over,
            "tf_serving_label_serves": label_serves,
            "tf_serving_safe_labels": safe_labels,
            "tf_serving_label_targets": label_targets,
            "tf_serving_final_labels": final_labels,
            "tf_serving_retire_versions": retire_versions,
            "tf_serving_rollout_model": rollout_model,
            "tf_serving_rollout_models": rollout_models,
            "tf_serving_rollout_problems": rollout_problems,
            "tf_serving_wave_problems": wave_problems,
        }
