"""Fixtures shared by the full-stack tests and drills (tests/drills holds the load loop)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import testinfra

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT / "tests" / "drills"))

# nginx on each web host, published on the controller's loopback (molecule.yml).
SITE_URLS = ("https://localhost:18443", "https://localhost:18444")
SERVING_HOSTS = ("stack-tfs1", "stack-tfs2")
WEB_HOSTS = ("stack-web1", "stack-web2")


@pytest.fixture(scope="session")
def site_urls() -> tuple[str, ...]:
    """The public site through every web host."""
    return SITE_URLS


@pytest.fixture(scope="session")
def inventory_file() -> str:
    return os.environ["MOLECULE_INVENTORY_FILE"]


@pytest.fixture(scope="session")
def host(inventory_file):
    """host(name): a testinfra host of the scenario, reached through Ansible's inventory."""

    def get(name: str):
        return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory_file}")

    return get


# The end-to-end checks first (they expect the stack as site.yml left it, version 1 serving), then
# monitoring (a quiet stack, so an alert's cause is known), then the drills, which change versions,
# settings and hosts: client faults before serving-tier changes; the releases last (they start
# from the single version the drills left serving).
FILE_ORDER = (
    "test_stack.py",
    "test_monitoring_stack.py",
    "test_drills_client.py",
    "test_drills_changes.py",
    "test_release.py",
)


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return FILE_ORDER.index(name) if name in FILE_ORDER else len(FILE_ORDER)

    items.sort(key=rank)  # stable: the order within a file stays


def web_tier_said(host, since_wall: float) -> str:
    """What each web host's app logged about failed TF Serving calls since a wall-clock time.

    The load loop sees a 503's text; the app's log names the gRPC status and the serving host
    behind it (calculator_web.serving logs "TF Serving <call> failed on <host>: <STATUS>: ...",
    tfsp_client logs ejections), which is what tells a failover gap from a server's error.
    """
    said = []
    for name in WEB_HOSTS:
        result = host(name).run(
            f"journalctl -u calculator-web --since @{int(since_wall)} --no-pager -o cat"
            " | grep -E 'failed on|ejected|answers again' | tail -n 15"
        )
        said.append(f"--- {name} (calculator-web's log):\n{result.stdout.strip() or '(nothing)'}")
    return "\n".join(said)


def drill_failure(load, problems: list[str], host, *more: str) -> str:
    """A failed drill's message: the load loop's summary and problems, ``more``, then the web tier's log."""
    records = load.report.records
    since = records[0].wall if records else 0
    return "\n".join(["load loop: " + load.report.summary(), *problems, *more, web_tier_said(host, since)])
