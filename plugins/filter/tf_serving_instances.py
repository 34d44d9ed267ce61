"""TF Serving's containers on a serving host, for every role that runs, calls, opens or scrapes them.

``stack_tf_serving_one_per_gpu | tfsp.serving.tf_serving_instances(gpu_count, grpc_port, rest_port,
name)`` is a host's own list (the stack role's ``stack_tf_serving_instances``, the tf_serving role's
containers); ``groups['tf_serving'] | tfsp.serving.tf_serving_targets(hostvars, grpc_port,
rest_port)`` is every instance of every host of a group as ``host:port`` (the web tier's
targets). The rule is plugins/plugin_utils/tf_serving_instances.py, unit-tested in
tests/tf_serving_instances.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tfsp.serving.plugins.plugin_utils.nvidia_gpu import GpuFactError
from ansible_collections.tfsp.serving.plugins.plugin_utils.tf_serving_instances import (
    InstanceError,
    host_instances,
    instances,
)


def tf_serving_instances(
    one_per_gpu: Any, gpu_count: Any, grpc_port: Any, rest_port: Any, name: str = "tf-serving"
) -> list[dict[str, Any]]:
    """This host's TF Serving containers: ``{index, name, grpc_port, rest_port, ports, device}`` each."""
    try:
        found = instances(
            one_per_gpu=one_per_gpu, gpu_count=gpu_count, grpc_port=grpc_port, rest_port=rest_port, name=name
        )
    except InstanceError as error:
        raise AnsibleFilterError(f"tf_serving_instances: {error}") from None
    return [{**instance, "ports": [instance["grpc_port"], instance["rest_port"]]} for instance in found]


def tf_serving_targets(
    hosts: Iterable[str],
    hostvars: Mapping[str, Any],
    grpc_port: Any,
    rest_port: Any,
    protocol: str = "grpc",
) -> list[str]:
    """``host:port`` of every instance of every host in ``hosts`` (``protocol``: grpc or rest).

    Each host's instances follow its own ``stack_tf_serving_one_per_gpu`` and
    ``stack_tf_serving_gpu_count`` (inventory or extra vars; else off, and its GPU fact); the ports
    are the caller's base ports.
    """
    if protocol not in ("grpc", "rest"):
        raise AnsibleFilterError(f"tf_serving_targets: protocol must be grpc or rest, not {protocol!r}")
    targets = []
    for host in hosts:
        try:
            found = host_instances(
                hostvars.get(host, {}),
                grpc_port=grpc_port,
                rest_port=rest_port,
            )
        except (InstanceError, GpuFactError) as error:
            raise AnsibleFilterError(f"tf_serving_targets: {host}: {error}") from None
        targets.extend(f"{host}:{instance[protocol + '_port']}" for instance in found)
    return targets


def tf_serving_stale_containers(
    containers: Iterable[Mapping[str, Any]], instances: Iterable[Mapping[str, Any]], name: str
) -> list[str]:
    """Names of containers left over from more instances than the host runs now.

    ``containers`` as ``community.docker.docker_host_info`` lists them (``Names`` like
    ``["/tf-serving-3"]``): those named ``<name>-<number>`` that are not one of ``instances`` (after
    one per GPU was switched off, or a GPU taken out). Nothing else is ever named.
    """
    pattern = re.compile(rf"^/?{re.escape(name)}-[0-9]+$")
    current = {instance["name"] for instance in instances}
    found = {
        found_name.lstrip("/")
        for container in containers
        for found_name in container.get("Names") or []
        if pattern.match(found_name)
    }
    return sorted(found - current, key=lambda stale: int(stale.rsplit("-", 1)[1]))


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "tf_serving_instances": tf_serving_instances,
            "tf_serving_targets": tf_serving_targets,
            "tf_serving_stale_containers": tf_serving_stale_containers,
        }
