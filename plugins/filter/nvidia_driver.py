"""Kernel, DKMS, Secure Boot and reboot rules of the nvidia_driver role, as Jinja filters.

The role gathers what the host says (installed packages, ``/boot``, ``dkms status``,
``/proc/driver/nvidia/version``, the ``SecureBoot`` EFI variable) and these functions decide:
which kernel headers DKMS needs, which installed kernels have no module, whether the host needs
a reboot and why. Unit-tested in tests/nvidia_driver/.

Vocabulary:

* a *kernel* is a kernel release as ``uname -r`` prints it (``6.1.0-50-amd64``,
  ``6.8.0-60-generic``); it is *installed* when ``/boot/vmlinuz-<kernel>`` exists, which is
  what the boot loader can start;
* a *flavour* is what follows ``linux-image-`` in the distribution's kernel metapackage
  (``amd64``, ``cloud-amd64``, ``arm64`` on Debian; ``generic``, ``generic-hwe-24.04`` on
  Ubuntu); ``linux-headers-<flavour>`` follows the same kernels, so DKMS gets the headers of
  every new kernel of that flavour;
* a *build* is a DKMS module version installed for a kernel (``dkms status``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # imported by the unit tests without Ansible's plugin loader
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

# The default flavour where no kernel metapackage is installed (a host whose kernel came from
# elsewhere, or a container): the distribution's generic kernel for the architecture.
DEFAULT_FLAVOURS = {
    "Debian": {"x86_64": "amd64", "aarch64": "arm64"},
    "Ubuntu": {"x86_64": "generic", "aarch64": "generic"},
}
# linux-image-<name> packages that are not a kernel flavour's metapackage: versioned images
# (a digit first), debug symbols, unsigned or template builds, Ubuntu's extra-modules package.
_NOT_A_FLAVOUR = re.compile(r"^(?:[0-9]|extra-)|-(?:dbg|unsigned|signed-template)$")
_IMAGE_META = re.compile(r"^linux-image-(?P<flavour>[a-z][a-z0-9.+-]*)$")
# dkms status, DKMS 3 ("nvidia-current/535.261.03, 6.1.0-50-amd64, x86_64: installed") and
# DKMS 2 ("nvidia-current, 535.261.03, 6.1.0-50-amd64, x86_64: installed"); a state may carry
# a warning in brackets after it.
_DKMS_LINE = re.compile(
    r"^(?P<module>[^,/\s]+)(?:/|,\s*)(?P<version>[^,\s]+),\s*(?P<kernel>[^,\s]+),\s*(?P<arch>[^:\s]+):\s*"
    r"(?P<state>[a-z-]+)"
)
# /proc/driver/nvidia/version: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  ..."
# or, for the open modules, "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  ...".
_NVRM = re.compile(r"^NVRM version:.*?Kernel Module(?: for \S+)?\s+(?P<version>[0-9]+(?:\.[0-9]+)+)\b", re.M)
_KERNEL_VERSION = re.compile(r"^(?P<version>[0-9]+(?:\.[0-9]+)*(?:-[0-9]+)?)")
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


def headers_packages(
    installed: Iterable[str] | Mapping[str, Any],
    distribution: str,
    architecture: str,
    flavours: Iterable[str] | None = None,
) -> list[str]:
    """The kernel headers metapackages DKMS needs so that every new kernel gets the module.

    ``flavours`` when given; otherwise one ``linux-headers-<flavour>`` per installed
    ``linux-image-<flavour>`` metapackage (``installed``: package names, or ``package_facts``'
    ``packages`` mapping), and the distribution's default flavour for the architecture when no
    such metapackage is installed.
    """
    chosen = sorted(set(flavours or []))
    if not chosen:
        for name in installed:
            match = _IMAGE_META.match(str(name))
            if match and not _NOT_A_FLAVOUR.search(match["flavour"]):
                chosen.append(match["flavour"])
        chosen = sorted(set(chosen))
    if not chosen:
        default = DEFAULT_FLAVOURS.get(distribution, {}).get(architecture)
        if default is None:
            raise AnsibleFilterError(
                f"nvidia_driver: no default kernel flavour for {distribution} on {architecture}: "
                "set nvidia_driver_kernel_flavours"
            )
        chosen = [default]
    bad = [flavour for flavour in chosen if not _PACKAGE_NAME.match(f"linux-headers-{flavour}")]
    if bad:
        raise AnsibleFilterError(f"nvidia_driver: not a kernel flavour: {bad}")
    return [f"linux-headers-{flavour}" for flavour in chosen]


def boot_kernels(paths: Iterable[Any]) -> list[str]:
    """Installed kernels from ``/boot/vmlinuz-*`` paths (strings or ``find``'s file entries), oldest first."""
    kernels = set()
    for entry in paths:
        path = entry.get("path", "") if isinstance(entry, Mapping) else str(entry)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        # vmlinuz-<kernel>, but not vmlinuz-<kernel>.old or the like left by other tools
        if name.startswith("vmlinuz-") and not name.endswith((".old", ".bak", ".dpkg-tmp")):
            kernels.add(name.removeprefix("vmlinuz-"))
    return sorted(kernels, key=kernel_sort_key)


def kernel_sort_key(kernel: str) -> tuple:
    """Orders kernels by their numeric version (``6.1.0-50`` after ``6.1.0-9``), then by name."""
    match = _KERNEL_VERSION.match(kernel)
    numbers = tuple(int(part) for part in re.split(r"[.-]", match["version"])) if match else ()
    return (numbers, kernel)


def dkms_builds(status: str, module: str) -> dict[str, str]:
    """``{kernel: version}`` of ``module``'s builds that ``dkms status`` reports installed."""
    builds = {}
    for line in (status or "").splitlines():
        match = _DKMS_LINE.match(line.strip())
        if match and match["module"] == module and match["state"] == "installed":
            builds[match["kernel"]] = match["version"]
    return builds


def kernels_without_module(kernels: Iterable[str], builds: Mapping[str, str]) -> list[str]:
    """Installed kernels that have no DKMS build of the module: booting one leaves the GPU unused."""
    return [kernel for kernel in kernels if kernel not in builds]


def _text(content: str | bytes | None, encoded: bool) -> bytes:
    if content is None:
        return b""
    raw = content if isinstance(content, bytes) else content.encode()
    if encoded:
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as error:
            raise AnsibleFilterError(f"nvidia_driver: not base64 (slurp's content): {error}") from error
    return raw


def loaded_version(content: str | None, encoded: bool = True) -> str:
    """Version of the loaded NVIDIA module from ``/proc/driver/nvidia/version``; empty when not loaded.

    ``content`` is ``slurp``'s base64 content by default (``encoded=False`` for plain text), or
    none when the file does not exist (the module is not loaded).
    """
    match = _NVRM.search(_text(content, encoded).decode("utf-8", "replace"))
    return match["version"] if match else ""


def secure_boot(content: str | None, encoded: bool = True) -> bool:
    """Whether the ``SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c`` EFI variable says Secure Boot is on.

    efivarfs returns the variable's 4-byte attributes followed by its data, one byte: 1 when
    Secure Boot is enforced. No variable (``content`` none: legacy BIOS boot, or no efivarfs)
    means off.
    """
    data = _text(content, encoded)
    if not data:
        return False
    if len(data) != 5:
        raise AnsibleFilterError(
            f"nvidia_driver: the SecureBoot EFI variable has {len(data)} bytes, "
            "expected 5 (attributes, value)"
        )
    return data[4] == 1


def reboot_reason(
    gpu_count: Any,
    loaded: str,
    builds: Mapping[str, str],
    running_kernel: str,
    kernels: Iterable[str],
    for_kernel: bool = False,
) -> str:
    """Why the host must reboot, in one line; empty when it must not.

    Only a host with a GPU ever reboots. It does when the module the next boot loads (the build
    for the running kernel, else for the newest installed kernel) differs from the loaded one,
    or when no module is loaded at all; with ``for_kernel``, also when a newer kernel than the
    running one is installed. Nothing to load (no build at all) is no reason: a reboot would
    not help, and the DKMS check fails the run before this is asked.
    """
    if int(gpu_count or 0) <= 0:
        return ""
    installed_kernels = sorted(kernels, key=kernel_sort_key)
    newest = installed_kernels[-1] if installed_kernels else ""
    target = running_kernel if running_kernel in builds else newest
    installed = builds.get(target, "")
    if installed and not loaded:
        return f"the NVIDIA module is not loaded although a GPU is present (driver {installed} installed)"
    if installed and loaded != installed:
        return f"the loaded NVIDIA module is {loaded}, the installed driver {installed}"
    if for_kernel and newest and kernel_sort_key(newest)[0] > kernel_sort_key(running_kernel)[0]:
        return f"kernel {newest} is installed, {running_kernel} is running"
    return ""


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "nvidia_driver_headers_packages": headers_packages,
            "nvidia_driver_boot_kernels": boot_kernels,
            "nvidia_driver_dkms_builds": dkms_builds,
            "nvidia_driver_kernels_without_module": kernels_without_module,
            "nvidia_driver_loaded_version": loaded_version,
            "nvidia_driver_secure_boot": secure_boot,
            "nvidia_driver_reboot_reason": reboot_reason,
        }
