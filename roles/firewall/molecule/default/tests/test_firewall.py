"""Who can reach whom once the firewall is in place, observed from the hosts themselves.

Every host runs a dual-stack listener on 22, 80, 443, 8500, 8501, 9090 and 9100
(see prepare.yml; the serving host's 8500 is a container's, below), so a failed
connection means the firewall dropped it. The
scenario's network carries IPv6, and connections go to the target's literal
address of the family under test, so an IPv4 test never passes over IPv6 or
the other way round.

A refusal only counts after a positive control: the same client reaches an
allowed port of the same target over the same family (`_refused`), so a host
that is down or a broken IPv6 path cannot pass for the firewall.

The serving host also runs a Docker engine, started after the firewall (converge.yml,
the order of playbooks/gpu_hosts.yml), with a container published on 8500 over IPv4
only, as the tf_serving role publishes on one IPv4 address (the host has no listener
of its own there): 8500 on the serving host is DNAT-ed to that container, the forward path; over IPv6 nothing
listens on 8500. The tests also route straight to the container's address
on Docker's bridge (the bridge path), and reload and restart the firewall under a
running Docker.

Not exercised with packets: the IPv6 side of the forward chain (Docker-published
ports, see the role README) and the monitoring hosts' IPv6 rules (the role derives
only IPv4 addresses from the monitoring group); the rendered rules are checked
as text in `test_ipv6_rules_rendered`.
"""

from __future__ import annotations

import functools
import os
import re

import pytest
import testinfra

DISTRO = os.environ.get("MOLECULE_DISTRO", "bookworm")
GPU = f"fw-gpu-{DISTRO}"
WEB = f"fw-web-{DISTRO}"
OUTSIDER = f"fw-outsider-{DISTRO}"
MONITORING = f"fw-mon-{DISTRO}"

# Connects to each port in turn; exit status 0 when all answered, else 10 + the
# index of the first port that did not.
PROBE = """
import socket, sys
for index, port in enumerate(sys.argv[2:]):
    try:
        socket.create_connection((sys.argv[1], int(port)), timeout=3).close()
    except OSError:
        sys.exit(10 + index)
"""


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@functools.cache
def _address(name: str, family: int = 4) -> str:
    """The host's default address of the given family (4 or 6), from its facts."""
    facts = _host(name).ansible("setup", "filter=ansible_default_ipv*")["ansible_facts"]
    return facts[f"ansible_default_ipv{family}"]["address"]


def _probe_address(source: str, address: str, *ports: int) -> int:
    args = " ".join(str(port) for port in ports)
    result = _host(source).run(f"python3 -c %s %s {args}", PROBE, address)
    assert result.rc == 0 or 10 <= result.rc < 10 + len(ports), result.stderr
    return result.rc


def _probe(source: str, target: str, family: int, *ports: int) -> int:
    return _probe_address(source, _address(target, family), *ports)


def _reaches(source: str, target: str, port: int, family: int = 4) -> bool:
    return _probe(source, target, family, port) == 0


def _refused(source: str, target: str, port: int, family: int = 4, control: int = 22) -> bool:
    """True when `port` is refused, after the control port answered the same client over the same family."""
    rc = _probe(source, target, family, control, port)
    assert rc != 10, f"control: {source} cannot reach {target}:{control} over IPv{family}"
    return rc == 11


def test_network_carries_both_families():
    """Control: every host has an address of each family, and the outsider, with no firewall,
    answers over both: a failure below is not the network."""
    for name in (GPU, WEB, OUTSIDER, MONITORING):
        assert "." in _address(name, 4)
        assert ":" in _address(name, 6)
    assert _reaches(GPU, OUTSIDER, 8500, 4)
    assert _reaches(GPU, OUTSIDER, 8500, 6)


@pytest.mark.parametrize(("port", "family"), [(8500, 4), (8501, 4), (8501, 6)])
def test_web_host_reaches_tf_serving(port, family):
    # 8500 is the container's, published over IPv4 only (see the module's docstring).
    assert _reaches(WEB, GPU, port, family)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("port", [8500, 8501])
def test_outsider_cannot_reach_tf_serving(port, family):
    assert _refused(OUTSIDER, GPU, port, family)


@pytest.mark.parametrize("family", [4, 6])
def test_ssh_port_open_on_serving_host(family):
    assert _reaches(OUTSIDER, GPU, 22, family)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("port", [80, 443])
def test_serving_host_opens_nothing_else(port, family):
    """The web ports are open on web hosts only."""
    assert _refused(OUTSIDER, GPU, port, family)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("port", [22, 80, 443])
def test_web_host_open_ports(port, family):
    """SSH, HTTP and HTTPS answer anyone, over IPv4 and IPv6."""
    assert _reaches(OUTSIDER, WEB, port, family)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("port", [8500, 9090])
def test_web_host_closes_other_ports(port, family):
    assert _refused(OUTSIDER, WEB, port, family, control=443)


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


def test_serving_host_allows_exactly_the_web_host():
    ruleset = _host(GPU).run("nft list set inet tfsp_filter tf_serving_clients4").stdout
    assert _address(WEB) in ruleset
    assert _address(OUTSIDER) not in ruleset


def test_ipv6_rules_rendered():
    """Every IPv4 address rule of the loaded ruleset has its IPv6 twin, and the IPv6 client set
    holds the web host's address.

    The table is of family inet, so its rules without an address match (SSH, the web
    ports, the default drop) apply to both families: the connection tests above
    exercise those and the input chain's `ip6 saddr @tf_serving_clients6` rule. The
    forward chain's and the monitoring rules' IPv6 lines are only checked here, as text.
    """
    ruleset = _host(GPU).run("nft list table inet tfsp_filter")
    assert ruleset.rc == 0, ruleset.stderr
    lines = [line.strip() for line in ruleset.stdout.splitlines()]
    ipv4_rules = [line for line in lines if re.search(r"\bip saddr @\w+4\b", line)]
    # Input: exporters, TF Serving, its REST port; forward: the same three.
    assert len(ipv4_rules) == 6, ipv4_rules
    for rule in ipv4_rules:
        twin = re.sub(r"\bip saddr @(\w+)4\b", r"ip6 saddr @\g<1>6", rule)
        assert twin in lines, f"no IPv6 counterpart of: {rule}"
    clients6 = _host(GPU).run("nft list set inet tfsp_filter tf_serving_clients6").stdout
    assert _address(WEB, 6) in clients6
    assert _address(OUTSIDER, 6) not in clients6


@pytest.mark.parametrize("target", [GPU, WEB])
def test_monitoring_host_reaches_the_node_exporter(target):
    assert _reaches(MONITORING, target, 9100)


@pytest.mark.parametrize("target", [GPU, WEB])
def test_outsider_cannot_reach_the_node_exporter(target):
    assert _refused(OUTSIDER, target, 9100)


def test_monitoring_host_reaches_tf_serving_rest_only():
    assert _reaches(MONITORING, GPU, 8501)
    assert _refused(MONITORING, GPU, 8500)


def test_prometheus_closed_without_operator_sources():
    assert _refused(OUTSIDER, MONITORING, 9090)


# ---- Docker on the serving host (started after the firewall) ----

CONTAINER = "tfsp-fw-target"
# Prints the body of http://<address>:<port>/whoami, or nothing when no answer.
WHOAMI = """
import sys, urllib.request
try:
    url = f"http://{sys.argv[1]}:{sys.argv[2]}/whoami"
    print(urllib.request.urlopen(url, timeout=5).read().decode().strip())
except OSError:
    pass
"""


def _whoami(source: str, address: str, port: int = 8500) -> str:
    return _host(source).run("python3 -c %s %s %s", WHOAMI, address, str(port)).stdout.strip()


def _docker(command: str) -> str:
    result = _host(GPU).run(f"docker {command}")
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def _container_address() -> str:
    return _docker("inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' " + CONTAINER)


def test_published_port_reaches_the_container_from_the_web_host():
    """IPv4 to 8500 is DNAT-ed to the container (its page answers): the forward path, open to the
    web host; the outsider's refusal is also test_outsider_cannot_reach_tf_serving."""
    assert _whoami(WEB, _address(GPU)) == CONTAINER
    assert _whoami(OUTSIDER, _address(GPU)) == ""
    assert _reaches(OUTSIDER, GPU, 22)


def test_bridge_path_closed():
    """A host that routes Docker's bridge network via the serving host cannot reach the container's
    own address (no DNAT), although Docker's rules accept it: the control, the same probe with an
    accept rule put ahead of the firewall's drop, gets through."""
    container = _container_address()
    subnet = _docker("network inspect bridge -f '{{(index .IPAM.Config 0).Subnet}}'")
    assert container
    assert subnet
    gpu, outsider = _host(GPU), _host(OUTSIDER)
    route = outsider.run(f"ip route replace {subnet} via {_address(GPU)}")
    assert route.rc == 0, route.stderr
    try:
        assert _probe_address(OUTSIDER, container, 8500) == 10
        control = gpu.run(f"nft insert rule inet tfsp_filter forward ip daddr {container} accept")
        assert control.rc == 0, control.stderr
        assert _whoami(OUTSIDER, container) == CONTAINER, "control: Docker refused the bridge path itself"
    finally:
        reload = gpu.run("systemctl reload nftables")
        outsider.run(f"ip route del {subnet}")
    assert reload.rc == 0, reload.stderr
    assert f"ip daddr {container} accept" not in gpu.run("nft list chain inet tfsp_filter forward").stdout


@pytest.mark.parametrize("action", ["reload", "restart"])
def test_firewall_reload_keeps_dockers_rules(action):
    """Reloading or restarting nftables replaces only the role's table: Docker's NAT rules stay, the
    published port still reaches the container from the web host and is still refused to the outsider."""
    gpu = _host(GPU)
    result = gpu.run(f"systemctl {action} nftables")
    assert result.rc == 0, result.stderr
    container = _container_address()
    nat = gpu.run("iptables -t nat -S DOCKER")
    assert nat.rc == 0, nat.stderr
    assert f"--to-destination {container}:8500" in nat.stdout
    assert gpu.run("nft list table inet tfsp_filter").rc == 0
    assert _whoami(WEB, _address(GPU)) == CONTAINER
    assert _refused(OUTSIDER, GPU, 8500)
