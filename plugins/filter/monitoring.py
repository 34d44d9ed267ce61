"""Filters of the monitoring role: Prometheus scrape configurations built from the inventory.

The rules for who is scraped, on which address and port, live here rather than in Jinja so that
they read in one place and are unit-tested (tests/monitoring/test_scrape_configs.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ansible_collections.tfsp.serving.plugins.plugin_utils.nvidia_gpu import GpuFactError, gpu_count
from ansible_collections.tfsp.serving.plugins.plugin_utils.tf_serving_instances import (
    InstanceError,
    host_instances,
)

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # imported by the unit tests without Ansible's plugin loader
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def host_address(name: str, host_vars: Mapping[str, Any]) -> str:
    """The address other hosts reach ``name`` on: ``monitoring_address``, an IP ``ansible_host``,
    else the default IPv4 address from its facts (the same rule as the firewall's)."""
    explicit = host_vars.get("monitoring_address")
    if explicit:
        return str(explicit)
    if _is_ip(host_vars.get("ansible_host", "")):
        return str(host_vars["ansible_host"])
    facts = host_vars.get("ansible_facts") or {}
    address = (facts.get("default_ipv4") or {}).get("address")
    if address:
        return str(address)
    raise AnsibleFilterError(
        f"monitoring: no address known for {name}: give it an IP ansible_host or monitoring_address, "
        "or gather its facts earlier in the run"
    )


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _per_host(job: str, hosts: list[str], hostvars: Mapping[str, Any], port_of, **extra) -> dict:
    """One scrape job with one static config per host, labelled with its inventory name."""
    return {
        "job_name": job,
        **extra,
        "static_configs": [
            {
                "targets": [_endpoint(host_address(name, hostvars[name]), port_of(hostvars[name]))],
                "labels": {"instance": name},
            }
            for name in hosts
        ],
    }


def _gpu_count(name: str, host_vars: Mapping[str, Any]) -> int:
    """GPUs of ``name`` by the nvidia_driver role's local fact (the rule the roles use)."""
    facts = host_vars.get("ansible_facts") or {}
    if "ansible_local" not in facts and "ansible_local" in host_vars:
        facts = {"ansible_local": host_vars["ansible_local"]}
    try:
        return gpu_count(facts)
    except GpuFactError as error:
        raise AnsibleFilterError(f"monitoring: {name}: {error}") from None


def _tf_serving_instances(name: str, host_vars: Mapping[str, Any], settings: Mapping[str, Any]) -> list[dict]:
    """The TF Serving containers of serving host ``name`` (the rule the tf_serving role runs them by),
    each with the labels that tell its series apart: ``instance`` (the host), and ``tf_serving_instance``
    (the container) where the host runs more than one."""
    try:
        found = host_instances(
            host_vars,
            grpc_port=host_vars.get("tf_serving_grpc_port", settings.get("tf_serving_grpc_port", 8500)),
            rest_port=host_vars.get("tf_serving_rest_port", settings["tf_serving_rest_port"]),
        )
    except (InstanceError, GpuFactError) as error:
        raise AnsibleFilterError(f"monitoring: {name}: {error}") from None
    for instance in found:
        instance["labels"] = {"instance": name}
        if len(found) > 1:
            instance["labels"]["tf_serving_instance"] = instance["name"]
    return found


def _blackbox(job: str, module: str, urls: list[tuple[str, str]], blackbox: str, interval: str) -> dict:
    """A blackbox exporter job: each (url, instance) is probed through the exporter at ``blackbox``."""
    return {
        "job_name": job,
        "metrics_path": "/probe",
        "scrape_interval": interval,
        "params": {"module": [module]},
        "static_configs": [{"targets": [url], "labels": {"instance": instance}} for url, instance in urls],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "url"},
            {"target_label": "__address__", "replacement": blackbox},
        ],
    }


def monitoring_scrape_configs(
    groups: Mapping[str, list[str]], hostvars: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[dict]:
    """Every scrape job of the stack, from the inventory groups named in ``settings``.

    ``settings`` keys: node_group, web_group, tf_serving_group, node_exporter_port,
    nginx_exporter_port, web_metrics_port, dcgm_exporter_port, tf_serving_rest_port,
    tf_serving_grpc_port (with the REST port, a serving host's own stack_tf_serving_one_per_gpu and
    its GPUs, it decides the host's TF Serving containers, each scraped on its own REST port),
    tf_serving_metrics_path, blackbox_address, probe_interval, site_urls, self_targets
    (job name -> host:port scraped on the monitoring host itself).
    """
    web = list(groups.get(settings["web_group"], []))
    serving = list(groups.get(settings["tf_serving_group"], []))
    nodes = list(groups.get(settings["node_group"], []))

    jobs = [
        {"job_name": job, "static_configs": [{"targets": [target]}]}
        for job, target in sorted(settings["self_targets"].items())
    ]
    jobs.append(_per_host("node", nodes, hostvars, lambda _: int(settings["node_exporter_port"])))
    if web:
        jobs.append(_per_host("nginx", web, hostvars, lambda _: int(settings["nginx_exporter_port"])))
        # Any gunicorn worker answers /metrics with every worker's counters
        # (prometheus-client multiprocess mode), so one scrape per host is whole.
        jobs.append(_per_host("web_app", web, hostvars, lambda _: int(settings["web_metrics_port"])))
    if serving:
        served = {name: _tf_serving_instances(name, hostvars[name], settings) for name in serving}
        jobs.append(
            {
                "job_name": "tf_serving",
                "metrics_path": settings["tf_serving_metrics_path"],
                "static_configs": [
                    {
                        "targets": [_endpoint(host_address(name, hostvars[name]), instance["rest_port"])],
                        "labels": instance["labels"],
                    }
                    for name in serving
                    for instance in served[name]
                ],
            }
        )
        gpu_hosts = [name for name in serving if _gpu_count(name, hostvars[name]) > 0]
        if gpu_hosts:
            jobs.append(_per_host("dcgm", gpu_hosts, hostvars, lambda _: int(settings["dcgm_exporter_port"])))
        models = [
            (
                f"http://{_endpoint(host_address(name, hostvars[name]), instance['rest_port'])}"
                f"/v1/models/{model['name']}",
                name,
            )
            for name in serving
            for instance in served[name]
            for model in hostvars[name].get("tf_serving_models", [])
        ]
        if models:
            jobs.append(
                _blackbox(
                    "tf_serving_model",
                    "tf_serving_model_available",
                    models,
                    settings["blackbox_address"],
                    settings["probe_interval"],
                )
            )
    sites = [(url, url) for url in settings["site_urls"]]
    if sites:
        jobs.append(
            _blackbox("site", "https_site", sites, settings["blackbox_address"], settings["probe_interval"])
        )
    return jobs


def monitoring_host_address(name: str, hostvars: Mapping[str, Any]) -> str:
    """Filter form of :func:`host_address`: ``inventory_hostname | monitoring_host_address(hostvars)``."""
    return host_address(name, hostvars[name])


def monitoring_group_addresses(names: list[str], hostvars: Mapping[str, Any]) -> list[str]:
    """The addresses of several hosts (for allow lists)."""
    return [host_address(name, hostvars[name]) for name in names]


def monitoring_mountpoint(path: str, mounts: list[Mapping[str, Any]]) -> str:
    """The mount point holding ``path``: the longest mount path that is a prefix of it."""
    best = "/"
    for mount in mounts:
        point = str(mount.get("mount", ""))
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if point and inside and len(point) > len(best):
            best = point
    return best


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "monitoring_scrape_configs": monitoring_scrape_configs,
            "monitoring_host_address": monitoring_host_address,
            "monitoring_group_addresses": monitoring_group_addresses,
            "monitoring_mountpoint": monitoring_mountpoint,
        }
