"""Which TF Serving containers a serving host runs: names, host ports and GPU devices.

One container (``tf-serving`` on the stack's ports) is the default. With one per GPU, a host runs
one container per GPU it counts, instance ``i`` on GPU ``i``, so that every GPU serves and no
server places everything on GPU 0. The tf_serving role (which runs them), the web tier (which
calls every one), the firewall (which opens every port to the web hosts only) and monitoring
(which scrapes every one) all take the list from here, so they cannot disagree. Controller-side
only; unit-tested in tests/tf_serving_instances.

Instance ``i`` publishes gRPC on ``grpc_port + 2 * i`` and REST on ``rest_port + 2 * i``: with the
stack's 8500/8501, instance 0 keeps 8500/8501 and its container name (``tf-serving``), so switching
one per GPU on or off leaves the first server where the web tier already calls it; instance 1 is
``tf-serving-1`` on 8502/8503, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.tfsp.serving.plugins.plugin_utils.nvidia_gpu import gpu_count

#: The spacing of consecutive instances' ports (gRPC and REST of one instance sit side by side).
PORT_STEP = 2
#: Inventory variables (set for a serving host, or its group) that decide its instances.
ONE_PER_GPU = "stack_tf_serving_one_per_gpu"
GPU_COUNT = "stack_tf_serving_gpu_count"
#: The stack role's default of ONE_PER_GPU (roles/stack/defaults/main.yml; a test keeps them equal).
ONE_PER_GPU_DEFAULT = False


class InstanceError(ValueError):
    """The settings give no valid set of instances (clashing or impossible ports, a bad count)."""


def _whole(value: Any, what: str) -> int:
    """``value`` as a non-negative int (Ansible may hand over digits as text); else InstanceError."""
    if isinstance(value, bool):
        raise InstanceError(f"{what} must be a whole number, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        raise InstanceError(f"{what} must be a whole number, not {value!r}")
    if number < 0:
        raise InstanceError(f"{what} must not be negative, not {number}")
    return number


def _flag(value: Any, what: str) -> bool:
    """``value`` as a bool, accepting what YAML and Jinja hand over (true/false, yes/no, 1/0)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise InstanceError(f"{what} must be true or false, not {value!r}")


def instances(
    *,
    one_per_gpu: Any,
    gpu_count: Any,
    grpc_port: Any,
    rest_port: Any,
    name: str = "tf-serving",
) -> list[dict[str, Any]]:
    """The TF Serving containers of one host, instance 0 first.

    Each is ``{"index", "name", "grpc_port", "rest_port", "device"}``: ``device`` is the GPU index
    (a string, as Docker's ``--gpus device=`` takes it) with one per GPU, ``None`` without (the
    single container then gets the GPUs the tf_serving role's ``tf_serving_gpus`` says). With one
    per GPU and no GPU counted, the host still runs one container (on the CPU).
    """
    per_gpu = _flag(one_per_gpu, ONE_PER_GPU)
    gpus = _whole(gpu_count, GPU_COUNT)
    grpc, rest = _whole(grpc_port, "the gRPC port"), _whole(rest_port, "the REST port")
    if not name:
        raise InstanceError("the container name must not be empty")
    count = max(gpus, 1) if per_gpu else 1
    found = [
        {
            "index": index,
            "name": name if index == 0 else f"{name}-{index}",
            "grpc_port": grpc + PORT_STEP * index,
            "rest_port": rest + PORT_STEP * index,
            "device": str(index) if per_gpu and gpus > 0 else None,
        }
        for index in range(count)
    ]
    ports = [port for instance in found for port in (instance["grpc_port"], instance["rest_port"])]
    if len(set(ports)) != len(ports):
        raise InstanceError(
            f"{count} instances on gRPC port {grpc} and REST port {rest} (each instance adds {PORT_STEP}) "
            f"would share a port: {ports}; put the REST port next to the gRPC port (8500/8501) or "
            f"at least {PORT_STEP * count} away from it"
        )
    if not all(0 < port < 65536 for port in ports):
        raise InstanceError(f"{count} instances need ports {ports}: each must be between 1 and 65535")
    return found


def host_instances(
    host_vars: Mapping[str, Any],
    *,
    grpc_port: Any,
    rest_port: Any,
    name: str = "tf-serving",
) -> list[dict[str, Any]]:
    """The instances of another host, as seen from a host that calls or watches it.

    ``host_vars`` are that host's variables as ``hostvars`` gives them (its inventory, extra vars
    and facts): its ``stack_tf_serving_one_per_gpu`` (else the stack role's default, off) and
    ``stack_tf_serving_gpu_count`` (else its GPU count from its own facts, by the rule of the stack
    role's default). Only that host's own variables count, never the caller's: a value set in a play
    is not seen here, so set it in the inventory. Ports and name are the caller's (its role
    variables, which default to the stack's, as the serving host's do).
    """
    per_gpu = _flag(host_vars.get(ONE_PER_GPU, ONE_PER_GPU_DEFAULT), ONE_PER_GPU)
    count = host_vars.get(GPU_COUNT)
    if count is None:
        facts = host_vars.get("ansible_facts") or {}
        if "ansible_local" not in facts and "ansible_local" in host_vars:
            facts = {"ansible_local": host_vars["ansible_local"]}
        if per_gpu and "ansible_local" not in facts:
            # Never gathered: counting 0 GPUs would leave every instance but the first uncalled.
            raise InstanceError(
                f"one TF Serving per GPU, but the host's GPUs are unknown: gather its facts earlier in the "
                f"run, or set {GPU_COUNT} for it in the inventory"
            )
        count = gpu_count(facts)
    return instances(
        one_per_gpu=per_gpu,
        gpu_count=count,
        grpc_port=grpc_port,
        rest_port=rest_port,
        name=name,
    )
