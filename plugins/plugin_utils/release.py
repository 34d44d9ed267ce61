"""Progressive delivery of a model version: the rules behind playbooks/release.yml.

A release loads the new version next to the one the serving hosts serve, under TF Serving's version
labels (``stable`` keeps the version users get, ``canary`` names the new one), then the web tier
sends a share of the calls to ``canary`` (split) and/or copies a share to it in the background
(shadow, compared with stable's answers). After a window, the figures the web tier exported to
Prometheus decide: **promote** (``stable`` moves to the new version, the old one goes by the
inventory's policy) or **roll back** (``canary`` goes, the version is quarantined on every host).

Everything here is pure and controller-side: what the play asks for (``plan``), the model config
of each phase (``phase_models``), the PromQL it runs (``queries``), the figures read from the
answers (``figures``) and the decision (``decide``). Unit-tested in tests/release.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

ACTIONS = ("run", "start", "decide", "promote", "abort")
#: Actions that begin a release (and so need none in progress).
STARTS = ("run", "start")
LABEL = re.compile(r"^[A-Za-z0-9_]+$")
#: Rates need samples at both ends of the window and some in between.
MIN_SCRAPES_PER_WINDOW = 4

#: The thresholds a release is judged by, with their defaults (playbooks/vars/release.yml).
THRESHOLDS: dict[str, float] = {
    # Calls that reached the canary (split calls and shadow copies): fewer decide nothing.
    "min_canary_calls": 50,
    # Share of the canary's calls that failed, and how far above stable's share it may be.
    "max_error_ratio": 0.01,
    "max_error_ratio_over_stable": 0.005,
    # Latency quantile compared (0 < q < 1), its ceiling, and how far above stable's it may be.
    "latency_quantile": 0.99,
    "max_latency_ms": 250,
    "max_latency_over_stable_ms": 50,
    # Share of shadow comparisons whose answers differed beyond the tolerance.
    "max_mismatch_ratio": 0.0,
}

#: Web-tier metrics the figures come from (django_app/calculator_web/metrics.py).
CALLS = "tfsp_web_upstream_duration_seconds"
ERRORS = "tfsp_web_upstream_errors_total"
SHADOW = "tfsp_web_shadow_requests_total"
SHADOW_DURATION = "tfsp_web_shadow_duration_seconds"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _version(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _threshold_problems(thresholds: Any) -> list[str]:
    if not isinstance(thresholds, Mapping):
        return ["release_thresholds must be a mapping of threshold names to numbers"]
    problems = []
    for name, value in thresholds.items():
        if name not in THRESHOLDS:
            problems.append(f"unknown threshold {name!r} (known: {', '.join(THRESHOLDS)})")
        elif _number(value) is None or _number(value) < 0:
            problems.append(f"threshold {name} must be a number of 0 or more, not {value!r}")
    quantile = _number(thresholds.get("latency_quantile", THRESHOLDS["latency_quantile"]))
    if quantile is not None and not 0 < quantile < 1:
        problems.append(f"threshold latency_quantile must be between 0 and 1 (exclusive), not {quantile}")
    return problems


def thresholds_in_force(thresholds: Mapping[str, Any] | None) -> dict[str, float]:
    """The defaults overlaid with the operator's thresholds (assumed checked)."""
    merged = dict(THRESHOLDS)
    merged.update({name: float(value) for name, value in (thresholds or {}).items() if name in THRESHOLDS})
    return merged


def _request_problems(request: Mapping[str, Any], scrape_seconds: float) -> list[str]:
    problems = []
    action = request.get("action")
    if action not in ACTIONS:
        return [f"release_action must be one of {', '.join(ACTIONS)}, not {action!r}"]
    stable_label, canary_label = request.get("stable_label"), request.get("canary_label")
    if not all(isinstance(label, str) and LABEL.match(label) for label in (stable_label, canary_label)):
        problems.append(f"version labels must match [A-Za-z0-9_]+: {stable_label!r}, {canary_label!r}")
    elif stable_label == canary_label:
        problems.append(f"the stable and canary labels are both {stable_label!r}")
    if action in STARTS:
        shares = {}
        for name in ("canary_percent", "shadow_percent"):
            share = _number(request.get(name))
            if share is None or not 0 <= share <= 100:
                problems.append(f"release_{name} must be a number from 0 to 100, not {request.get(name)}")
            shares[name] = share
        if shares["canary_percent"] == 0 and shares["shadow_percent"] == 0:
            problems.append(
                "release_canary_percent and release_shadow_percent are both 0: nothing would reach the canary"
            )
        tolerance = _number(request.get("tolerance"))
        if tolerance is None or tolerance < 0:
            problems.append(
                f"release_tolerance must be a number of 0 or more, not {request.get('tolerance')}"
            )
    if action in ("run", "decide"):
        window = _number(request.get("window_seconds"))
        least = MIN_SCRAPES_PER_WINDOW * scrape_seconds
        if window is None or window <= 0:
            problems.append(
                f"release_window_seconds must be a number of seconds, not {request.get('window_seconds')}"
            )
        elif window < least:
            problems.append(
                f"release_window_seconds {window:g} cannot be evaluated: Prometheus scrapes every "
                f"{scrape_seconds:g} s and a rate needs {MIN_SCRAPES_PER_WINDOW} scrapes "
                f"(at least {least:g} s)"
            )
        problems += _threshold_problems(request.get("thresholds", {}))
    return problems


def _agreed(values: Iterable[int | None]) -> set[int]:
    return {value for value in values if value is not None}


DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")


def duration_seconds(text: Any) -> float | None:
    """A Prometheus duration ("15s", "1m", "500ms") in seconds; a bare number is seconds."""
    number = _number(text)
    if number is not None:
        return number
    found = DURATION.match(str(text).strip())
    if not found:
        return None
    return float(found.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[found.group(2)]


def plan(request: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """What the release play will do, or why it must not start: ``{problems, stable, canary, ...}``.

    ``request``: action, model, version, canary_percent, shadow_percent, window_seconds, thresholds,
    stable_label, canary_label, tolerance. ``context``: ``models`` (the inventory's
    tf_serving_models), ``controller_versions``, ``served`` ({host: {available: [versions],
    labels: {label: version or None}, error}}), ``routing`` ({web host: the routing file's
    ``release`` or None}), ``prometheus`` ({error, web_series}) and ``scrape_interval``.
    """
    scrape_seconds = duration_seconds(context.get("scrape_interval", "15s")) or 15.0
    problems = _request_problems(request, scrape_seconds)
    result: dict[str, Any] = {
        "problems": problems,
        "stable": None,
        "canary": None,
        "model": request.get("model"),
    }
    if problems:
        return result
    action = request["action"]
    stable_label, canary_label = request["stable_label"], request["canary_label"]
    model = next((m for m in context.get("models", []) if m.get("name") == request.get("model")), None)
    if model is None:
        problems.append(f"model {request.get('model')!r} is not in tf_serving_models")
        return result
    served: Mapping[str, Mapping[str, Any]] = context.get("served", {})
    if context.get("unreachable"):
        problems.append(f"serving hosts unreachable: {', '.join(sorted(context['unreachable']))}")
        return result
    silent = sorted(host for host, state in served.items() if state.get("error"))
    if silent:
        problems.append(
            "serving hosts did not answer: "
            + "; ".join(f"{host}: {served[host]['error']}" for host in silent)
        )
        return result
    routed = sorted(host for host, release in context.get("routing", {}).items() if release)
    canary_hosts = sorted(host for host, state in served.items() if state.get("labels", {}).get(canary_label))
    in_progress = bool(routed or canary_hosts)
    result["in_progress"] = in_progress
    # The shares the web tier runs with: the request's for a new release, else the routing files'.
    releases = [r for r in context.get("routing", {}).values() if isinstance(r, Mapping)]
    for share in ("canary_percent", "shadow_percent"):
        if action in STARTS:
            result[share] = float(request[share])
        else:
            result[share] = max((_number(r.get(share)) or 0.0 for r in releases), default=0.0)

    if action in STARTS:
        if in_progress:
            problems.append(
                f"a release is in progress (routing on {', '.join(routed) or 'no web host'}, label "
                f"{canary_label} on {', '.join(canary_hosts) or 'no serving host'}): finish it with "
                "release_action=promote or release_action=abort"
            )
            return result
        problems += _start_problems(request, model, context, served, result)
    else:
        if not in_progress:
            problems.append(f"no release is in progress: nothing to {action}")
            return result
        stables = _agreed(state.get("labels", {}).get(stable_label) for state in served.values())
        canaries = _agreed(state.get("labels", {}).get(canary_label) for state in served.values())
        if len(stables) != 1 or any(
            state.get("labels", {}).get(stable_label) is None for state in served.values()
        ):
            problems.append(
                f"the serving hosts do not agree on label {stable_label}: {_labels(served, stable_label)}"
            )
        elif len(canaries) > 1:
            problems.append(
                f"the serving hosts do not agree on label {canary_label}: {_labels(served, canary_label)}"
            )
        else:
            result["stable"] = stables.pop()
            result["canary"] = canaries.pop() if canaries else None
            missing = sorted(set(served) - set(canary_hosts))
            if action in ("promote", "decide") and (result["canary"] is None or missing):
                problems.append(
                    f"the canary is not loaded on {', '.join(missing)}: it cannot be promoted; "
                    "release_action=abort rolls the release back"
                )
    if action in ("run", "decide"):
        prometheus = context.get("prometheus", {})
        if prometheus.get("error"):
            problems.append(
                f"the release cannot be evaluated: Prometheus did not answer: {prometheus['error']}"
            )
        elif not prometheus.get("web_series"):
            problems.append(
                f"the release cannot be evaluated: Prometheus has no {CALLS} series "
                "(is the web tier scraped? see playbooks/monitoring.yml)"
            )
    return result


def _labels(served: Mapping[str, Mapping[str, Any]], label: str) -> str:
    return ", ".join(
        f"{host}: {state.get('labels', {}).get(label)}" for host, state in sorted(served.items())
    )


def _start_problems(
    request: Mapping[str, Any],
    model: Mapping[str, Any],
    context: Mapping[str, Any],
    served: Mapping[str, Mapping[str, Any]],
    result: dict[str, Any],
) -> list[str]:
    problems = []
    name = model["name"]
    if model.get("version_policy", "latest") != "latest" or int(model.get("num_versions", 1)) != 1:
        problems.append(
            f"{name} is not served by the latest policy with one version in the inventory "
            f"(version_policy {model.get('version_policy')}): a release ends by serving the newest version"
        )
    canary = _version(request.get("version"))
    controller = sorted(_agreed(_version(v) for v in context.get("controller_versions", [])))
    if canary is None:
        problems.append(f"release_version must be a version number, not {request.get('version')!r}")
        return problems
    if canary not in controller:
        problems.append(f"{name} version {canary} is not on the controller (it has {controller})")
    elif canary != controller[-1]:
        problems.append(
            f"{name} version {canary} is not the newest on the controller ({controller[-1]}): "
            "after a promotion "
            f"the inventory's latest policy would serve {controller[-1]}"
        )
    available = {host: sorted(state.get("available", [])) for host, state in served.items()}
    if not available:
        problems.append("no serving host in the play")
        return problems
    if (
        any(len(versions) != 1 for versions in available.values())
        or len({tuple(v) for v in available.values()}) != 1
    ):
        problems.append(
            "the serving hosts must all serve one and the same version: "
            + ", ".join(f"{host}: {versions}" for host, versions in sorted(available.items()))
        )
        return problems
    stable = next(iter(available.values()))[0]
    if canary == stable:
        problems.append(
            f"{name} version {canary} is the version the hosts serve now (stable): nothing to release"
        )
    result["stable"], result["canary"] = stable, canary
    return problems


def phase_models(
    models: list[Mapping[str, Any]],
    name: str,
    phase: str,
    stable: int,
    canary: int | None,
    stable_label: str = "stable",
    canary_label: str = "canary",
) -> list[dict[str, Any]]:
    """The tf_serving role's models for a phase of the release (other models unchanged).

    ``pin``: only stable, labelled (nothing new loads, even under the latest policy);
    ``canary``: stable and the canary side by side, each under its label;
    ``promote``: both loaded, the stable label on the canary's version;
    ``inventory``: the model as the inventory has it (the release is over).
    """
    shapes = {
        "pin": ([stable], {stable_label: stable}),
        "canary": ([stable, canary], {stable_label: stable, canary_label: canary}),
        "promote": ([stable, canary], {stable_label: canary}),
    }
    if phase == "inventory":
        return [dict(model) for model in models]
    if phase not in shapes:
        raise ValueError(f"unknown release phase {phase!r} (pin, canary, promote, inventory)")
    versions, labels = shapes[phase]
    if any(version is None for version in versions):
        raise ValueError(f"phase {phase} needs both versions: stable {stable}, canary {canary}")
    changed = []
    for model in models:
        if model.get("name") != name:
            changed.append(dict(model))
            continue
        release = {key: value for key, value in model.items() if key not in ("num_versions", "labels")}
        release.update(
            version_policy="specific",
            specific_versions=sorted(versions),
            versions=sorted(versions),
            labels=dict(labels),
        )
        changed.append(release)
    return changed


def routing(request: Mapping[str, Any], phase: str) -> dict[str, Any] | None:
    """The web tier's routing for a phase: ``None`` (no labels), ``stable`` only, or the split."""
    if phase == "off":
        return None
    shares = {
        "stable": (0.0, 0.0),
        "split": (float(request["canary_percent"]), float(request["shadow_percent"])),
    }
    if phase not in shares:
        raise ValueError(f"unknown routing phase {phase!r} (off, stable, split)")
    canary_percent, shadow_percent = shares[phase]
    return {
        "stable_label": request["stable_label"],
        "canary_label": request["canary_label"],
        "canary_percent": canary_percent,
        "shadow_percent": shadow_percent,
        "tolerance": float(request["tolerance"]),
    }


def queries(window_seconds: Any, quantile: Any, stable_label: str, canary_label: str) -> dict[str, str]:
    """The PromQL queries the decision reads (instant queries over the window).

    The numbers may come as text (extra vars on the command line are strings).
    """
    window = f"{round(float(window_seconds))}s"
    quantile = float(quantile)

    def increase(metric: str, label: str) -> str:
        return f'sum(increase({metric}{{version_label="{label}"}}[{window}]))'

    def latency(selector: str) -> str:
        return f"histogram_quantile({quantile:g}, sum by (le) ({selector}))"

    return {
        "stable_ok": increase(f"{CALLS}_count", stable_label),
        "stable_errors": increase(ERRORS, stable_label),
        "canary_ok": increase(f"{CALLS}_count", canary_label),
        "canary_errors": increase(ERRORS, canary_label),
        "shadow": f"sum by (outcome) (increase({SHADOW}[{window}]))",
        "stable_latency": latency(f'rate({CALLS}_bucket{{version_label="{stable_label}"}}[{window}])'),
        # The canary's calls of both kinds: the split's and the shadow copies (different label sets,
        # so `or` keeps both before the sum).
        "canary_latency": latency(
            f'rate({CALLS}_bucket{{version_label="{canary_label}"}}[{window}])'
            f" or rate({SHADOW_DURATION}_bucket[{window}])"
        ),
    }


def _samples(answer: Any) -> list[tuple[dict[str, str], float | None]]:
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        raise ValueError(f"Prometheus did not answer the query: {answer!r}"[:300])
    samples = []
    for item in answer.get("data", {}).get("result", []):
        samples.append((item.get("metric", {}), _number(item.get("value", [None, None])[1])))
    return samples


def _total(answer: Any) -> float:
    return sum(value for _labels, value in _samples(answer) if value is not None)


def _quantile_ms(answer: Any) -> float | None:
    values = [value for _labels, value in _samples(answer) if value is not None]
    return round(values[0] * 1000, 3) if values else None


def figures(answers: Mapping[str, Any]) -> dict[str, Any]:
    """The release's figures from Prometheus's answers to ``queries`` (JSON of /api/v1/query)."""
    shadow = {labels.get("outcome", ""): value or 0.0 for labels, value in _samples(answers["shadow"])}
    stable_ok, stable_errors = _total(answers["stable_ok"]), _total(answers["stable_errors"])
    canary_ok, canary_errors = _total(answers["canary_ok"]), _total(answers["canary_errors"])
    compared = shadow.get("match", 0.0) + shadow.get("mismatch", 0.0)
    canary_calls = canary_ok + canary_errors + compared + shadow.get("error", 0.0)
    canary_failed = canary_errors + shadow.get("error", 0.0)
    stable_calls = stable_ok + stable_errors

    def ratio(part: float, whole: float) -> float | None:
        return round(part / whole, 6) if whole > 0 else None

    return {
        "stable_calls": round(stable_calls),
        "stable_error_ratio": ratio(stable_errors, stable_calls),
        "stable_latency_ms": _quantile_ms(answers["stable_latency"]),
        "canary_calls": round(canary_calls),
        "canary_split_calls": round(canary_ok + canary_errors),
        "canary_error_ratio": ratio(canary_failed, canary_calls),
        "canary_latency_ms": _quantile_ms(answers["canary_latency"]),
        "shadow_compared": round(compared),
        "shadow_mismatches": round(shadow.get("mismatch", 0.0)),
        "shadow_skipped": round(shadow.get("skipped", 0.0)),
        "mismatch_ratio": ratio(shadow.get("mismatch", 0.0), compared),
    }


def decide(
    found: Mapping[str, Any],
    thresholds: Mapping[str, Any] | None,
    shadow_percent: float,
    manual: str = "",
) -> dict[str, Any]:
    """Promote or roll back, with every check and its figures: ``{decision, by, reasons, checks}``.

    ``manual`` (``promote`` or ``abort``) is the operator's decision: recorded with the figures.
    Otherwise every check must pass to promote; a check without data fails (no evidence, no
    promotion).
    """
    limits = thresholds_in_force(thresholds)
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, passes: bool | None, note: str = "") -> None:
        checks.append({"check": name, "value": value, "limit": limit, "ok": bool(passes), "note": note})

    calls = found.get("canary_calls") or 0
    check("canary calls", calls, limits["min_canary_calls"], calls >= limits["min_canary_calls"])
    error_ratio = found.get("canary_error_ratio")
    check(
        "canary error ratio",
        error_ratio,
        limits["max_error_ratio"],
        error_ratio is not None and error_ratio <= limits["max_error_ratio"],
    )
    stable_ratio = found.get("stable_error_ratio")
    if stable_ratio is not None:
        over = limits["max_error_ratio_over_stable"]
        check(
            "canary error ratio over stable's",
            None if error_ratio is None else round(error_ratio - stable_ratio, 6),
            over,
            error_ratio is not None and error_ratio - stable_ratio <= over,
        )
    latency = found.get("canary_latency_ms")
    check(
        f"canary latency p{limits['latency_quantile'] * 100:g} (ms)",
        latency,
        limits["max_latency_ms"],
        latency is not None and latency <= limits["max_latency_ms"],
    )
    stable_latency = found.get("stable_latency_ms")
    if stable_latency is not None:
        check(
            "canary latency over stable's (ms)",
            None if latency is None else round(latency - stable_latency, 3),
            limits["max_latency_over_stable_ms"],
            latency is not None and latency - stable_latency <= limits["max_latency_over_stable_ms"],
        )
    if float(shadow_percent) > 0:
        mismatch = found.get("mismatch_ratio")
        check(
            "shadow mismatch ratio",
            mismatch,
            limits["max_mismatch_ratio"],
            mismatch is not None and mismatch <= limits["max_mismatch_ratio"],
            "" if mismatch is not None else "no shadow comparison in the window",
        )
    failed = [c for c in checks if not c["ok"]]
    reasons = [
        f"{c['check']}: {c['value'] if c['value'] is not None else 'no data'} (limit {c['limit']:g})"
        for c in failed
    ]
    if manual:
        if manual not in ("promote", "abort"):
            raise ValueError(f"manual decision must be promote or abort, not {manual!r}")
        return {
            "decision": "promote" if manual == "promote" else "rollback",
            "by": "operator",
            "reasons": [f"release_action={manual}", *reasons],
            "checks": checks,
        }
    return {
        "decision": "rollback" if failed else "promote",
        "by": "metrics",
        "reasons": reasons or ["every check passed"],
        "checks": checks,
    }


def served_state(
    version_answers: list[Mapping[str, Any]], label_answers: list[Mapping[str, Any]]
) -> dict[str, Any]:
    """One host's state from its containers' REST answers (the tf_serving role's ``served`` entry point).

    ``version_answers``: results of GET /v1/models/<model> per container; ``label_answers``: results
    of GET /v1/models/<model>/labels/<label> per (container, label) (``item`` is [instance, label]).
    Returns ``{available: [versions], labels: {label: version or None}, error}``; containers that
    disagree are an error, as is one that does not answer.
    """

    def available(answer: Mapping[str, Any]) -> tuple[int, ...] | None:
        statuses = (answer.get("json") or {}).get("model_version_status")
        if not isinstance(statuses, list):
            return None
        return tuple(sorted(int(s["version"]) for s in statuses if s.get("state") == "AVAILABLE"))

    seen = {available(answer) for answer in version_answers}
    if not version_answers or None in seen:
        silent = [a for a in version_answers if available(a) is None]
        why = (
            (silent[0].get("json") or {}).get("error") or silent[0].get("msg", "no answer")
            if silent
            else "no container"
        )
        return {"available": [], "labels": {}, "error": f"no model status ({why})"}
    if len(seen) > 1:
        return {
            "available": [],
            "labels": {},
            "error": f"its containers serve different versions: {sorted(seen)}",
        }
    labels: dict[str, set[int | None]] = {}
    for answer in label_answers:
        label = answer["item"][1]
        versions = available(answer)
        labels.setdefault(label, set()).add(versions[0] if versions else None)
    split = {label: sorted(map(str, found)) for label, found in labels.items() if len(found) > 1}
    if split:
        return {"available": [], "labels": {}, "error": f"its containers disagree on labels: {split}"}
    return {
        "available": list(seen.pop()),
        "labels": {label: found.pop() for label, found in labels.items()},
        "error": None,
    }


def routing_state(slurped: list[Mapping[str, Any]]) -> dict[str, Any]:
    """{web host: the routing file's ``release`` (None when absent or empty)} from slurp results.

    A file that is missing reads as no release; one that does not parse as a release that cannot
    be known, which a new release must not overwrite blindly ("unreadable").
    """
    state: dict[str, Any] = {}
    for result in slurped:
        host = result.get("item")
        if "content" not in result:
            state[host] = None
            continue
        try:
            document = json.loads(base64.b64decode(result["content"]).decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            state[host] = "unreadable"
            continue
        state[host] = document.get("release") if isinstance(document, dict) else "unreadable"
    return state


def prometheus_probe(result: Mapping[str, Any]) -> dict[str, Any]:
    """{error, web_series} from the uri result of ``count(<calls>_count)``."""
    if result.get("skipped"):
        return {"error": None, "web_series": None, "skipped": True}
    answer = result.get("json")
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        why = (answer or {}).get("error") if isinstance(answer, Mapping) else None
        return {"error": why or result.get("msg") or f"HTTP {result.get('status')}", "web_series": 0}
    return {"error": None, "web_series": round(_total(answer))}


def figures_from_results(results: list[Mapping[str, Any]]) -> dict[str, Any]:
    """``figures`` from the uri results of ``queries`` (loop over its items), or ``{error}``."""
    answers = {result["item"]["key"]: result.get("json") for result in results if "item" in result}
    try:
        return figures(answers)
    except (KeyError, ValueError) as error:
        return {"error": f"the figures could not be read from Prometheus: {error}"}
