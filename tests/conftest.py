"""Shared pytest hooks of the controller-side tests."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter) -> None:
    """Each Molecule scenario's verifier counts, so a summary shows what ran inside the scenarios."""
    module = sys.modules.get("test_molecule_scenarios")
    counts = getattr(module, "VERIFIER_COUNTS", {})
    if counts:
        terminalreporter.section("Molecule verifiers (testinfra inside each scenario)")
        for case, line in sorted(counts.items()):
            terminalreporter.write_line(f"{case}: {line}")
