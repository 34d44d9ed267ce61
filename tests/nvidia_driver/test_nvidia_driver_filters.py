"""Kernel headers, DKMS builds, Secure Boot and the reboot decision (plugins/filter/nvidia_driver.py).

The inputs are what the hosts print: ``dkms status`` of DKMS 3 (Debian 12/13, Ubuntu 24.04) and
DKMS 2, ``/proc/driver/nvidia/version`` of the proprietary and the open kernel modules, and the
bytes efivarfs returns for the SecureBoot variable.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/nvidia_driver.py"
_spec = importlib.util.spec_from_file_location("nvidia_driver_filters", PLUGIN)
nd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nd)

DKMS3 = (
    "nvidia-current/535.261.03, 6.1.0-50-amd64, x86_64: installed\n"
    "nvidia-current/535.261.03, 6.1.0-50-cloud-amd64, x86_64: installed"
    " (WARNING! Diff between built and installed module!)\n"
    "nvidia-current/535.261.03, 6.1.0-57-amd64, x86_64: built\n"
    "other-module/1.0, 6.1.0-57-amd64, x86_64: installed\n"
)
DKMS2 = "nvidia-srv, 570.133.20, 6.8.0-60-generic, x86_64: installed\n"
PROC_PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul  2 21:41:48 UTC 2025\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)\n"
)
PROC_OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Tue Mar 25 00:38:17 UTC 2025\n"
    "GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n"
)


def b64(data: bytes | str) -> str:
    """What slurp returns for a file holding ``data``."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# --- kernel headers ----------------------------------------------------------------------------


def test_headers_follow_each_installed_image_metapackage():
    installed = {
        "linux-image-amd64": [],
        "linux-image-cloud-amd64": [],
        "linux-image-6.1.0-50-amd64": [],
        "linux-image-amd64-dbg": [],
        "linux-headers-6.1.0-50-amd64": [],
    }
    assert nd.headers_packages(installed, "Debian", "x86_64") == [
        "linux-headers-amd64",
        "linux-headers-cloud-amd64",
    ]


def test_ubuntu_hwe_flavour_keeps_its_name():
    installed = [
        "linux-image-generic-hwe-24.04",
        "linux-image-6.11.0-26-generic",
        "linux-image-extra-virtual",
    ]
    assert nd.headers_packages(installed, "Ubuntu", "x86_64") == ["linux-headers-generic-hwe-24.04"]


@pytest.mark.parametrize(
    ("distribution", "architecture", "expected"),
    [
        ("Debian", "x86_64", ["linux-headers-amd64"]),
        ("Debian", "aarch64", ["linux-headers-arm64"]),
        ("Ubuntu", "x86_64", ["linux-headers-generic"]),
    ],
)
def test_without_an_image_metapackage_the_distribution_default(distribution, architecture, expected):
    assert nd.headers_packages(["linux-image-6.1.0-50-amd64"], distribution, architecture) == expected


def test_explicit_flavours_win():
    assert nd.headers_packages(["linux-image-amd64"], "Debian", "x86_64", ["rt-amd64"]) == [
        "linux-headers-rt-amd64"
    ]


def test_unknown_architecture_asks_for_the_flavour():
    with pytest.raises(nd.AnsibleFilterError, match="set nvidia_driver_kernel_flavours"):
        nd.headers_packages([], "Debian", "riscv64")


# --- kernels and DKMS builds -------------------------------------------------------------------


def test_boot_kernels_from_find_results_in_version_order():
    files = [
        {"path": "/boot/vmlinuz-6.1.0-9-amd64"},
        {"path": "/boot/vmlinuz-6.1.0-50-amd64"},
        {"path": "/boot/vmlinuz-6.1.0-50-amd64.old"},
        {"path": "/boot/vmlinuz-6.1.0-50-cloud-amd64"},
    ]
    assert nd.boot_kernels(files) == ["6.1.0-9-amd64", "6.1.0-50-amd64", "6.1.0-50-cloud-amd64"]


def test_trixie_kernel_names_sort_by_version():
    names = ["/boot/vmlinuz-6.12.41+deb13-amd64", "/boot/vmlinuz-6.12.9+deb13-amd64"]
    assert nd.boot_kernels(names) == ["6.12.9+deb13-amd64", "6.12.41+deb13-amd64"]


def test_dkms3_status_counts_installed_builds_of_the_module_only():
    assert nd.dkms_builds(DKMS3, "nvidia-current") == {
        "6.1.0-50-amd64": "535.261.03",
        "6.1.0-50-cloud-amd64": "535.261.03",
    }


def test_dkms2_status():
    assert nd.dkms_builds(DKMS2, "nvidia-srv") == {"6.8.0-60-generic": "570.133.20"}
    assert nd.dkms_builds("", "nvidia-srv") == {}


def test_kernels_without_module():
    builds = nd.dkms_builds(DKMS3, "nvidia-current")
    kernels = ["6.1.0-50-amd64", "6.1.0-50-cloud-amd64", "6.1.0-57-amd64"]
    assert nd.kernels_without_module(kernels, builds) == ["6.1.0-57-amd64"]


# --- loaded module, Secure Boot ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "version"), [(PROC_PROPRIETARY, "535.261.03"), (PROC_OPEN, "570.133.20")])
def test_loaded_version(text, version):
    assert nd.loaded_version(b64(text)) == version
    assert nd.loaded_version(text, encoded=False) == version


def test_no_module_loaded():
    assert nd.loaded_version(None) == ""
    assert nd.loaded_version(b64("")) == ""


@pytest.mark.parametrize(
    ("data", "enabled"),
    [
        (bytes([0x06, 0x00, 0x00, 0x00, 0x01]), True),
        (bytes([0x06, 0x00, 0x00, 0x00, 0x00]), False),
        (None, False),
    ],
)
def test_secure_boot_from_the_efi_variable(data, enabled):
    assert nd.secure_boot(None if data is None else b64(data)) is enabled


def test_secure_boot_variable_of_the_wrong_size_is_an_error():
    with pytest.raises(nd.AnsibleFilterError, match="expected 5"):
        nd.secure_boot(b64(b"\x06\x00\x00\x00"))


# --- reboot decision ---------------------------------------------------------------------------

BUILDS = {"6.1.0-50-amd64": "535.261.03"}
KERNELS = ["6.1.0-50-amd64"]


def test_no_reboot_without_a_gpu():
    assert nd.reboot_reason(0, "", BUILDS, "6.1.0-50-amd64", KERNELS) == ""
    assert nd.reboot_reason("0", "535.216.01", BUILDS, "6.1.0-50-amd64", KERNELS) == ""


def test_no_reboot_when_the_loaded_module_is_the_installed_one():
    assert nd.reboot_reason(8, "535.261.03", BUILDS, "6.1.0-50-amd64", KERNELS) == ""


def test_reboot_when_versions_differ():
    reason = nd.reboot_reason(8, "535.216.01", BUILDS, "6.1.0-50-amd64", KERNELS)
    assert reason == "the loaded NVIDIA module is 535.216.01, the installed driver 535.261.03"


def test_reboot_when_no_module_is_loaded_on_a_gpu_host():
    reason = nd.reboot_reason("2", "", BUILDS, "6.1.0-50-amd64", KERNELS)
    assert reason == "the NVIDIA module is not loaded although a GPU is present (driver 535.261.03 installed)"


def test_the_newest_kernels_build_counts_when_the_running_kernel_has_none():
    builds = {"6.1.0-57-amd64": "535.309.01"}
    kernels = ["6.1.0-50-amd64", "6.1.0-57-amd64"]
    reason = nd.reboot_reason(1, "535.261.03", builds, "6.1.0-49-amd64", kernels)
    assert reason == "the loaded NVIDIA module is 535.261.03, the installed driver 535.309.01"


def test_nothing_built_is_no_reason_to_reboot():
    assert nd.reboot_reason(1, "", {}, "6.1.0-50-amd64", KERNELS) == ""


def test_a_newer_kernel_reboots_only_when_asked():
    kernels = ["6.1.0-50-amd64", "6.1.0-57-amd64"]
    builds = {"6.1.0-50-amd64": "535.261.03", "6.1.0-57-amd64": "535.261.03"}
    assert nd.reboot_reason(1, "535.261.03", builds, "6.1.0-50-amd64", kernels) == ""
    assert (
        nd.reboot_reason(1, "535.261.03", builds, "6.1.0-50-amd64", kernels, for_kernel=True)
        == "kernel 6.1.0-57-amd64 is installed, 6.1.0-50-amd64 is running"
    )
    # Another flavour of the running kernel's version is not newer.
    flavours = ["6.1.0-50-amd64", "6.1.0-50-cloud-amd64"]
    assert nd.reboot_reason(1, "535.261.03", builds, "6.1.0-50-amd64", flavours, for_kernel=True) == ""
