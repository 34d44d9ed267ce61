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
    # /sys/module lists loaded modules (and built-in ones with parameters); some kernels give
    # containers no /proc/modules, so that is read only where it exists.
    assert host.file("/sys/module").is_directory
    assert not host.file("/sys/module/nvidia").exists
    modules = host.file("/proc/modules")
    if modules.exists:
        assert not any(line.split()[0].startswith("nvidia") for line in modules.content_string.splitlines())


def test_persistence_daemon_masked_without_gpu(host):
    assert host.run("systemctl is-enabled nvidia-persistenced").stdout.strip() == "masked"
    assert not host.service("nvidia-persistenced").is_running


def test_no_nvidia_unit_tried_to_start(host):
    failed = host.run("systemctl list-units --failed --no-pager --plain --no-legend").stdout
    assert "nvidia" not in failed, failed
