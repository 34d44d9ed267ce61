"""How many NVIDIA GPUs a host has, read from the ``nvidia_gpu`` local fact.

The nvidia_driver role installs the fact (``/etc/ansible/facts.d/nvidia_gpu.fact``, which counts
PCI devices of vendor 0x10de and display class 0x03); every other reader of it (the stack role's
``stack_gpu_present``, nvidia_driver itself, the monitoring role's scrape targets) goes through
this one function, so they cannot disagree on what the fact says. Controller-side only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FACT = "nvidia_gpu"


class GpuFactError(ValueError):
    """The fact is there but does not say how many GPUs the host has."""


def gpu_count(facts: Mapping[str, Any] | None) -> int:
    """The GPU count in ``facts`` (a host's ``ansible_facts``).

    No local facts, or no ``nvidia_gpu`` fact among them, means the fact was never installed (the
    nvidia_driver role has not run on the host, or facts were not gathered): 0, a CPU host. A fact
    that is there but unreadable (Ansible puts its error message in place of a fact it could not
    parse) or has no usable count raises GpuFactError: a GPU host is never taken for a CPU one
    because its fact broke.
    """
    if facts is None:
        return 0
    if not isinstance(facts, Mapping):
        raise GpuFactError(f"expected a host's facts (a mapping), got {type(facts).__name__}")
    local = facts.get("ansible_local")
    if local is None:
        return 0
    if not isinstance(local, Mapping):
        raise GpuFactError(f"ansible_local is not a mapping of local facts: {local!r}")
    fact = local.get(FACT)
    if fact is None:
        return 0
    if not isinstance(fact, Mapping):
        raise GpuFactError(f"the {FACT} local fact could not be read: {fact}")
    count = fact.get("count")
    # An executable fact's JSON gives an int; an INI-style fact would give its digits as text.
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    if isinstance(count, str) and count.strip().isdigit():
        return int(count)
    raise GpuFactError(f"the {FACT} local fact has no GPU count (a whole number): {dict(fact)!r}")
