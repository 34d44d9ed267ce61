"""systemd's own score of a unit's sandbox, for the testinfra tests of the roles that sandbox one."""

from __future__ import annotations


def exposure(host, unit: str) -> float:
    """The figure of ``systemd-analyze security``'s "Overall exposure level" line (0 safest, 10 worst)."""
    result = host.run(f"systemd-analyze security --no-pager {unit}")
    lines = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert lines, result.stdout + result.stderr
    return float(lines[0].split(":", 1)[1].split()[0])
