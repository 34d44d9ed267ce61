"""Filters of the calculator_web role: the addresses the app's systemd sandbox lets it reach.

systemd's ``IPAddressAllow=`` takes addresses, not names, while the app's TF Serving targets are
``host:port`` with inventory names (or IP literals). The rule for a host's address is the fleet's
(the firewall and monitoring roles use it too): an IP ``ansible_host``, else the default addresses
from the host's gathered facts. Unit-tested in tests/calculator_web/.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # imported by the unit tests without Ansible's plugin loader
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def _ip(value: Any) -> str | None:
    """``value`` as a normalised IP address, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def _target_host(target: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``."""
    host, sep, port = str(target).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AnsibleFilterError(f"calculator_web: TF Serving target {target!r} is not host:port")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_addresses(host_vars: Mapping[str, Any]) -> list[str]:
    explicit = _ip(host_vars.get("ansible_host", ""))
    if explicit:
        return [explicit]
    facts = host_vars.get("ansible_facts") or {}
    found = [_ip((facts.get(key) or {}).get("address")) for key in ("default_ipv4", "default_ipv6")]
    return [address for address in found if address]


def calculator_web_target_addresses(targets: Iterable[str], hostvars: Mapping[str, Any]) -> list[str]:
    """The IP addresses of ``targets`` (``host:port``), sorted, each once.

    A target is an IP address, or an inventory host reached on its IP ``ansible_host`` or, failing
    that, its default IPv4 and IPv6 addresses from gathered facts. Anything else is an error that
    names the target: the sandbox would otherwise shut the app out of it.
    """
    addresses: set[str] = set()
    for target in targets:
        host = _target_host(target)
        literal = _ip(host)
        if literal:
            addresses.add(literal)
            continue
        found = _host_addresses(hostvars[host]) if host in hostvars else []
        if not found:
            raise AnsibleFilterError(
                f"calculator_web: no address known for TF Serving target {target}: name an inventory host "
                "with an IP ansible_host or gathered facts, or set calculator_web_ip_address_allow"
            )
        addresses.update(found)
    return sorted(addresses, key=lambda address: (":" in address, address))


class FilterModule:
    """calculator_web filters."""

    def filters(self):
        return {"calculator_web_target_addresses": calculator_web_target_addresses}
