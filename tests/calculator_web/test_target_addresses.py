"""The addresses the app may reach under systemd IPAddressAllow=: its TF Serving targets' (calculator_web)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "calculator_web.py"
spec = importlib.util.spec_from_file_location("calculator_web_filters", PLUGIN)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)
target_addresses = filters.calculator_web_target_addresses

HOSTVARS = {
    # Reached by its IP ansible_host, whatever its facts say.
    "gpu1": {"ansible_host": "10.0.1.11", "ansible_facts": {"default_ipv4": {"address": "192.0.2.99"}}},
    # A name as ansible_host (the local stack's containers have none): the facts decide, IPv6 too.
    "gpu2": {
        "ansible_host": "gpu2.example",
        "ansible_facts": {"default_ipv4": {"address": "10.0.1.12"}, "default_ipv6": {"address": "fd00::12"}},
    },
    "gpu3": {"ansible_facts": {"default_ipv4": {"address": "10.0.1.13"}}},
    # No IP ansible_host and no facts gathered.
    "gpu4": {"ansible_host": "gpu4.example"},
}


def test_inventory_hosts_by_the_fleets_address_rule():
    targets = ["gpu1:8500", "gpu2:8500", "gpu3:8500", "gpu1:8501", "gpu2:8501", "gpu3:8501"]
    assert target_addresses(targets, HOSTVARS) == ["10.0.1.11", "10.0.1.12", "10.0.1.13", "fd00::12"]


def test_ip_literals_kept_and_normalised():
    assert target_addresses(["10.0.2.5:8500", "[fd00:0::5]:8500"], HOSTVARS) == ["10.0.2.5", "fd00::5"]


def test_no_targets_no_addresses():
    assert target_addresses([], HOSTVARS) == []


@pytest.mark.parametrize("target", ["gpu4:8500", "elsewhere.example:8500"])
def test_a_target_without_a_known_address_is_named(target):
    expected = f"no address known for TF Serving target {target}: .*calculator_web_ip_address_allow"
    with pytest.raises(filters.AnsibleFilterError, match=expected):
        target_addresses(["gpu1:8500", target], HOSTVARS)


@pytest.mark.parametrize("target", ["gpu1", "gpu1:grpc", ":8500"])
def test_a_target_that_is_not_host_port(target):
    with pytest.raises(filters.AnsibleFilterError, match="is not host:port"):
        target_addresses([target], HOSTVARS)
