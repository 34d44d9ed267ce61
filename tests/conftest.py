"""Shared pytest hooks of the controller-side tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The collection's plugins import their shared code by its collection name
# (ansible_collections.tfsp.serving.plugins.plugin_utils...), as Ansible loads
# them; collections/ maps this tree as that collection, so the unit tests that
# load a plugin by its path import the same code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))


def pytest_terminal_summary(terminalreporter) -> None:
    """Each Molecule scenario's verifier counts, so a summary shows what ran inside the scenarios."""
    module = sys.modules.get("test_molecule_scenarios")
    counts = getattr(module, "VERIFIER_COUNTS", {})
    if counts:
        terminalreporter.section("Molecule verifiers (testinfra inside each scenario)")
        for case, line in sorted(counts.items()):
            terminalreporter.write_line(f"{case}: {line}")
