"""A forced driver install on a GPU-less test host.

Packages, sources and blacklist, nothing loaded; the module built and signed for every Debian
kernel installed; the driver version held and kept from unattended-upgrades.

Kernels: under `make test-all` prepare installs the distribution's kernel before the driver, and
side_effect a second one of another flavour, which the role refuses until it has a build, then
builds. CI's `make test` saves one DKMS build (about 7 minutes): the distribution's kernel arrives
only after the driver (a kernel upgrade: DKMS builds for it from the headers already there), and
the second kernel, refused the same way, is removed instead of built.
"""

import json
import os
import re

import pytest

# `make test-all` (the full matrix) builds the module for the second kernel too; CI's `make test`
# removes that kernel after the role's refusal instead (side_effect.yml), which saves a build.
# In both, the distribution's kernel has its build (installed before the driver or after it).
SECOND_BUILD = os.environ.get("MOLECULE_MATRIX") == "all"

# The common name of the throwaway key prepare.yml makes.
TEST_MOK_SIGNER = "tfsp test module signing key"


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


@pytest.fixture(scope="module")
def kernels(host):
    names = host.run("ls /boot").stdout.split()
    return sorted(name.removeprefix("vmlinuz-") for name in names if name.startswith("vmlinuz-"))


def test_the_debian_kernels_of_the_test_installed(kernels):
    cloud = [kernel for kernel in kernels if re.search(r"-cloud-(amd64|arm64)$", kernel)]
    if SECOND_BUILD:
        assert len(kernels) == 2, kernels
        assert len(cloud) == 1, kernels
    else:
        # The second kernel was removed after the role refused it.
        assert len(kernels) == 1, kernels
        assert not cloud, kernels


def test_headers_metapackage_of_each_kernel_flavour(host):
    arch = host.run("dpkg --print-architecture").stdout.strip()
    assert host.package(f"linux-headers-{arch}").is_installed
    assert host.package(f"linux-headers-cloud-{arch}").is_installed == SECOND_BUILD


def test_every_installed_kernel_has_a_module_signed_with_the_operators_key(host, kernels):
    status = host.run("dkms status -m nvidia-current").stdout
    for kernel in kernels:
        built = rf"^nvidia-current/[0-9.]+, {re.escape(kernel)}, \S+: installed"
        assert re.search(built, status, re.M), status
        found = host.run(f"ls /lib/modules/{kernel}/updates/dkms/").stdout.split()
        module = next(name for name in found if re.match(r"nvidia-current\.ko(\.[gx]z|\.zst)?$", name))
        signer = host.run(f"modinfo -F signer /lib/modules/{kernel}/updates/dkms/{module}")
        assert signer.rc == 0, signer.stderr
        assert signer.stdout.strip() == TEST_MOK_SIGNER


def test_dkms_signs_with_the_operators_key(host):
    key = host.file("/etc/dkms/mok/mok.key")
    assert key.mode == 0o600
    assert key.user == "root"
    assert host.file("/etc/dkms/mok").mode == 0o700
    # DER, as mokutil --import takes it: an ASN.1 SEQUENCE with a long-form length.
    assert host.run("head -c 2 /etc/dkms/mok/mok.der | od -An -tx1").stdout.split()[:2] == ["30", "82"]
    conf = host.file("/etc/dkms/framework.conf.d/nvidia-driver-mok.conf").content_string.splitlines()
    assert 'mok_signing_key="/etc/dkms/mok/mok.key"' in conf
    assert 'mok_certificate="/etc/dkms/mok/mok.der"' in conf


def test_driver_version_held_by_apt(host):
    installed = host.package("nvidia-kernel-dkms").version
    pin = host.file("/etc/apt/preferences.d/nvidia-driver.pref").content_string
    assert f"Package: src:nvidia-graphics-drivers\nPin: version {installed}\nPin-Priority: 1001" in pin
    for package in ("nvidia-driver", "libcuda1", "firmware-nvidia-gsp"):
        policy = host.run(f"apt-cache policy {package}").stdout
        assert re.search(rf"^ \*\*\* {re.escape(installed)} 1001$", policy, re.M), policy


def test_driver_kept_out_of_unattended_upgrades(host):
    dump = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    for entry in (".*nvidia", "^libcuda"):
        assert f'Unattended-Upgrade::Package-Blacklist:: "{entry}";' in dump, dump
