"""A forced driver install on a GPU-less test host: packages, sources and blacklist, nothing loaded."""

import json

import pytest


@pytest.mark.parametrize(
    "package", ["nvidia-driver", "nvidia-kernel-dkms", "firmware-nvidia-gsp", "nvidia-smi"]
)
def test_driver_packages_installed(host, package):
    assert host.package(package).is_installed


def test_nonfree_components_enabled_as_deb822_source(host):
    sources = host.file("/etc/apt/sources.list.d/debian-nonfree.sources")
    assert sources.exists
    assert "Components: contrib non-free non-free-firmware" in sources.content_string
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in sources.content_string


def test_nouveau_blacklisted(host):
    blacklist = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert blacklist.mode == 0o644
    lines = blacklist.content_string.splitlines()
    assert "blacklist nouveau" in lines
    assert "options nouveau modeset=0" in lines


def test_gpu_fact_reports_no_gpu_here(host):
    result = host.run("/etc/ansible/facts.d/nvidia_gpu.fact")
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout) == {"count": 0, "pci_addresses": []}


def test_no_nvidia_module_loaded(host):
    modules = host.file("/proc/modules").content_string
    assert not any(line.split()[0].startswith("nvidia") for line in modules.splitlines())


def test_persistence_daemon_left_alone_without_gpu(host):
    service = host.service("nvidia-persistenced")
    assert not service.is_running
    assert host.run("systemctl --failed --no-pager --plain | grep -c nvidia").stdout.strip() == "0"
