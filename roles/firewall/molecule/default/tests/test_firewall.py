"""Who can reach whom once the firewall is in place, observed from the hosts themselves.

Every host runs a listener on 22, 80, 8500 and 8501 (see prepare.yml), so a
failed connection means the firewall dropped it.
"""

from __future__ import annotations

import os

import pytest
import testinfra

DISTRO = os.environ.get("MOLECULE_DISTRO", "bookworm")
GPU = f"fw-gpu-{DISTRO}"
WEB = f"fw-web-{DISTRO}"
OUTSIDER = f"fw-outsider-{DISTRO}"

CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()"


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def _reaches(source: str, target: str, port: int) -> bool:
    return _host(source).run("python3 -c %s %s %s", CONNECT, target, str(port)).rc == 0


@pytest.mark.parametrize("port", [8500, 8501])
def test_web_host_reaches_tf_serving(port):
    assert _reaches(WEB, GPU, port)


@pytest.mark.parametrize("port", [8500, 8501])
def test_outsider_cannot_reach_tf_serving(port):
    assert not _reaches(OUTSIDER, GPU, port)


def test_ssh_port_open_on_serving_host():
    assert _reaches(OUTSIDER, GPU, 22)


def test_serving_host_opens_nothing_else():
    assert not _reaches(OUTSIDER, GPU, 80)


@pytest.mark.parametrize("port", [22, 80])
def test_web_host_open_ports(port):
    assert _reaches(OUTSIDER, WEB, port)


def test_web_host_closes_other_ports():
    assert not _reaches(OUTSIDER, WEB, 8500)


def test_outsider_unfiltered():
    """Control: the outsider has no firewall, so a failure above is not the network."""
    assert _reaches(GPU, OUTSIDER, 8500)


@pytest.mark.parametrize("name", [GPU, WEB])
def test_ruleset_loaded_and_persistent(name):
    host = _host(name)
    assert host.service("nftables").is_enabled
    ruleset = host.run("nft list table inet tfsp_filter")
    assert ruleset.rc == 0, ruleset.stderr
    assert "policy drop" in ruleset.stdout
    assert "tcp dport 22 accept" in ruleset.stdout
    conf = host.file("/etc/nftables.conf")
    assert conf.user == "root"
    assert conf.mode == 0o750


def _address(name: str) -> str:
    facts = _host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def test_serving_host_allows_exactly_the_web_host():
    ruleset = _host(GPU).run("nft list set inet tfsp_filter tf_serving_clients4").stdout
    assert _address(WEB) in ruleset
    assert _address(OUTSIDER) not in ruleset


MONITORING = f"fw-mon-{DISTRO}"


@pytest.mark.parametrize("target", [GPU, WEB])
def test_monitoring_host_reaches_the_node_exporter(target):
    assert _reaches(MONITORING, target, 9100)


@pytest.mark.parametrize("target", [GPU, WEB])
def test_outsider_cannot_reach_the_node_exporter(target):
    assert not _reaches(OUTSIDER, target, 9100)


def test_monitoring_host_reaches_tf_serving_rest_only():
    assert _reaches(MONITORING, GPU, 8501)
    assert not _reaches(MONITORING, GPU, 8500)


def test_prometheus_closed_without_operator_sources():
    assert not _reaches(OUTSIDER, MONITORING, 9090)
    assert _reaches(OUTSIDER, MONITORING, 22)
