"""GPU detection for the roles: ``ansible_facts | tfsp.serving.nvidia_gpu_present``.

The rule (what the nvidia_driver role's ``nvidia_gpu`` local fact says, and what its absence or a
broken fact mean) is in plugins/plugin_utils/nvidia_gpu.py, unit-tested in tests/nvidia_gpu; the
roles call these filters instead of repeating a Jinja expression over the fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tfsp.serving.plugins.plugin_utils.nvidia_gpu import GpuFactError, gpu_count


def nvidia_gpu_count(facts: Mapping[str, Any] | None) -> int:
    """NVIDIA GPUs of the host whose ``ansible_facts`` these are (0 without the fact)."""
    try:
        return gpu_count(facts)
    except GpuFactError as error:
        raise AnsibleFilterError(f"nvidia_gpu_count: {error}") from None


def nvidia_gpu_present(facts: Mapping[str, Any] | None) -> bool:
    """Whether the host whose ``ansible_facts`` these are has an NVIDIA GPU."""
    try:
        return gpu_count(facts) > 0
    except GpuFactError as error:
        raise AnsibleFilterError(f"nvidia_gpu_present: {error}") from None


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"nvidia_gpu_count": nvidia_gpu_count, "nvidia_gpu_present": nvidia_gpu_present}
