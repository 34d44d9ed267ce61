"""The base role leaves a host whose package tools work and carry the baseline."""

import pytest


@pytest.mark.parametrize("package", ["ca-certificates", "curl", "python3-venv"])
def test_baseline_packages_installed(host, package):
    assert host.package(package).is_installed


def test_no_apt_proxy_configured_by_default(host):
    assert not host.file("/etc/apt/apt.conf.d/01tfsp-proxy").exists


def test_python_venv_creates_a_working_interpreter(host):
    result = host.run("python3 -m venv /tmp/probe-venv && /tmp/probe-venv/bin/python -c 'print(6 * 7)'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_system_booted_cleanly(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-pager").stdout
