"""Filters of playbooks/release.yml (progressive delivery): the rules are
plugins/plugin_utils/release.py, unit-tested in tests/release.

``request | tfsp.serving.release_plan(context)`` checks a release before any host is touched;
``models | tfsp.serving.release_phase_models(name, phase, stable, canary, stable_label,
canary_label)`` is the tf_serving role's models in a phase; ``request |
tfsp.serving.release_routing(phase)`` the web tier's routing; ``window | tfsp.serving.release_queries(
quantile, stable_label, canary_label)`` the PromQL; ``answers | tfsp.serving.release_figures`` the
figures; ``figures | tfsp.serving.release_decision(thresholds, shadow_percent, manual)`` the
decision.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tfsp.serving.plugins.plugin_utils import release


def _filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """A rule as a filter: its ValueError becomes the play's error, named after the filter."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (ValueError, KeyError, TypeError) as error:
            raise AnsibleFilterError(f"release_{function.__name__}: {error}") from None

    return wrapper


class FilterModule:
    """Progressive delivery filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "release_plan": _filter(release.plan),
            "release_phase_models": _filter(release.phase_models),
            "release_routing": _filter(release.routing),
            "release_queries": _filter(release.queries),
            "release_figures": _filter(release.figures),
            "release_decision": _filter(release.decide),
            "release_thresholds": _filter(release.thresholds_in_force),
            "release_served_state": _filter(release.served_state),
            "release_routing_state": _filter(release.routing_state),
            "release_prometheus_probe": _filter(release.prometheus_probe),
            "release_figures_from_results": _filter(release.figures_from_results),
        }
