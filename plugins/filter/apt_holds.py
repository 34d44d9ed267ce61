"""Held package versions and pinned repository keys, as Jinja filters.

Shared by the nvidia_driver and container_runtime roles, whose packages (the NVIDIA driver, the
NVIDIA Container Toolkit, Docker) must change only when the operator changes a version variable
and rolls it through the fleet in waves:

* ``apt_held_version``: the version to hold, the one asked for or else the one installed;
* ``apt_versioned_names``: package names for the apt module, with the version asked for;
* ``apt_preferences``: the ``/etc/apt/preferences.d`` text that holds it (priority 1001: apt
  keeps it and even downgrades to it, and never takes a newer one by itself);
* ``apt_unattended_blacklist``: the apt.conf text that keeps unattended-upgrades away from
  those packages;
* ``apt_key_fingerprints`` / ``apt_key_problems``: the OpenPGP fingerprints of a repository
  key, computed here (RFC 4880 and RFC 9580), so that a key is trusted only when it is the one
  whose fingerprint the vendor publishes.

Unit-tested in tests/apt_holds/.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # imported by the unit tests without Ansible's plugin loader
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

PIN_PRIORITY = 1001
# What apt accepts in a Package: line (names, globs, src:<source>) and a Pin: version pattern;
# nothing that could end the stanza or start another one.
_PACKAGE = re.compile(r"^(?:src:)?[a-z0-9*?][a-z0-9.+*?-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9.+:~*?-]+$")
_BLACKLIST_ENTRY = re.compile(r'^[^"\s;{}]+$')
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$|^[0-9A-F]{64}$")
_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S
)
# OpenPGP packet tag of a primary public key (subkeys, tag 14, are not what a fingerprint pins).
_PUBLIC_KEY = 6


def apt_held_version(requested: str | None, packages: Mapping[str, Any] | None, package: str) -> str:
    """``requested`` when set; otherwise the installed version of ``package`` (from ``package_facts``'
    ``packages``), so that what a host runs stays what it runs; empty when neither is known."""
    if requested:
        return str(requested)
    entries = (packages or {}).get(package) or []
    return str(entries[0]["version"]) if entries else ""


def apt_versioned_names(names: Iterable[str], versions: Mapping[str, Any]) -> list[str]:
    """``names`` for the apt module, ``name=version`` where ``versions`` asks for one.

    The apt module then installs that version (an upgrade, or with ``allow_downgrade`` a
    downgrade) when the installed one does not match it, and leaves the others alone.
    """
    out = []
    for name in names:
        version = str(versions.get(name) or "")
        if version and not _VERSION.match(version):
            raise AnsibleFilterError(f"not an apt version (pattern) for {name}: {version!r}")
        out.append(f"{name}={version}" if version else str(name))
    return out


def apt_preferences(holds: Iterable[Mapping[str, Any]], owner: str) -> str:
    """apt_preferences(5) text that holds each ``{packages: [...], version: ..., why: ...}``.

    Entries without a version are left out (nothing installed, nothing asked for yet); the text
    is empty when no entry is left, and the role then removes the file.
    """
    stanzas = []
    for hold in holds:
        version = str(hold.get("version") or "")
        if not version:
            continue
        packages = [str(name) for name in hold.get("packages") or []]
        bad = [name for name in packages if not _PACKAGE.match(name)]
        if not packages or bad:
            raise AnsibleFilterError(f"{owner}: not package names to hold: {bad or packages}")
        if not _VERSION.match(version):
            raise AnsibleFilterError(f"{owner}: not an apt version (pattern) to hold: {version!r}")
        why = " ".join(str(hold.get("why") or "held by Ansible").split())
        stanzas.append(
            f"Explanation: {why}\nPackage: {' '.join(packages)}\nPin: version {version}\n"
            f"Pin-Priority: {PIN_PRIORITY}\n"
        )
    if not stanzas:
        return ""
    header = (
        f"Explanation: Managed by Ansible ({owner}). Held versions: an upgrade is a change of the\n"
        "Explanation: role's version variable, rolled through the fleet in waves.\n"
    )
    return header + "\n".join(stanzas)


def apt_unattended_blacklist(patterns: Iterable[str], owner: str) -> str:
    """apt.conf text adding ``patterns`` (regular expressions matched at the start of a package
    name) to ``Unattended-Upgrade::Package-Blacklist``; lists of several files add up."""
    entries = [str(pattern) for pattern in patterns]
    bad = [entry for entry in entries if not _BLACKLIST_ENTRY.match(entry)]
    if bad or not entries:
        raise AnsibleFilterError(
            f"{owner}: not usable as unattended-upgrades blacklist entries: {bad or entries}"
        )
    lines = "".join(f'    "{entry}";\n' for entry in entries)
    return (
        f"// Managed by Ansible ({owner}): these packages change only when the role's version\n"
        "// variables do, never through unattended-upgrades.\n"
        f"Unattended-Upgrade::Package-Blacklist {{\n{lines}}};\n"
    )


def _dearmor(data: bytes) -> bytes:
    """The binary packets of an ASCII-armored key file (every block in it), or ``data`` as it is."""
    text = data.decode("ascii", "replace")
    blocks = list(_ARMOR.finditer(text))
    if not blocks:
        if text.lstrip().startswith("-----BEGIN"):
            raise AnsibleFilterError("not an OpenPGP public key block")
        return data
    packets = b""
    for block in blocks:
        lines = block["body"].splitlines()
        # Armor headers (Version:, Comment:) end at the first empty line.
        if "" in [line.strip() for line in lines]:
            lines = lines[[line.strip() for line in lines].index("") + 1 :]
        payload = "".join(line.strip() for line in lines if not line.startswith("="))
        try:
            packets += base64.b64decode(payload, validate=True)
        except binascii.Error as error:
            raise AnsibleFilterError(f"the armored key is not valid base64: {error}") from error
    return packets


def _packets(data: bytes) -> Iterable[tuple[int, bytes]]:
    """``(tag, body)`` of each OpenPGP packet (RFC 9580 section 4.2: old and new headers)."""
    position = 0
    while position < len(data):
        first = data[position]
        if not first & 0x80:
            raise AnsibleFilterError(f"not an OpenPGP packet at byte {position}")
        if first & 0x40:  # new format
            tag = first & 0x3F
            octet = data[position + 1]
            if octet < 192:
                length, header = octet, 2
            elif octet < 224:
                length, header = ((octet - 192) << 8) + data[position + 2] + 192, 3
            elif octet == 255:
                length, header = int.from_bytes(data[position + 2 : position + 6], "big"), 6
            else:
                raise AnsibleFilterError("partial-length packets do not occur in a public key")
        else:  # legacy format
            tag = (first >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(first & 0x03)
            if size is None:
                raise AnsibleFilterError("indeterminate-length packets do not occur in a public key")
            length = int.from_bytes(data[position + 1 : position + 1 + size], "big")
            header = 1 + size
        body = data[position + header : position + header + length]
        if len(body) != length:
            raise AnsibleFilterError("truncated OpenPGP packet")
        yield tag, body
        position += header + length


def _fingerprint(body: bytes) -> str:
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False).hexdigest()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest()
    raise AnsibleFilterError(f"OpenPGP key version {version} is not supported")


def apt_key_fingerprints(content: str | bytes | None, encoded: bool = True) -> list[str]:
    """Fingerprints (upper-case hex) of the primary keys in a key file, armored or binary.

    ``content`` is ``slurp``'s (or ``uri``'s, with ``encoded=False``) content of the file.
    """
    if content is None:
        return []
    data = content if isinstance(content, bytes) else content.encode()
    if encoded:
        try:
            data = base64.b64decode(data, validate=True)
        except binascii.Error as error:
            raise AnsibleFilterError(f"not base64 (slurp's content): {error}") from error
    return [_fingerprint(body).upper() for tag, body in _packets(_dearmor(data)) if tag == _PUBLIC_KEY]


def _normal(fingerprint: Any) -> str:
    return re.sub(r"\s+", "", str(fingerprint)).upper()


def apt_key_problems(
    content: str | bytes | None, pinned: Iterable[str], name: str, encoded: bool = True
) -> list[str]:
    """Why the key file is not to be trusted for ``name``'s repository; empty when it is.

    Every primary key in the file must be one of ``pinned`` (fingerprints as published, spaces
    allowed), and there must be at least one: apt trusts every key of a ``Signed-By`` file.
    """
    wanted = [_normal(fingerprint) for fingerprint in pinned]
    malformed = [fingerprint for fingerprint in wanted if not _FINGERPRINT.match(fingerprint)]
    if not wanted or malformed:
        return [f"{name}: the pinned fingerprints are not 40 or 64 hex digits: {malformed or wanted}"]
    try:
        found = apt_key_fingerprints(content, encoded)
    except (AnsibleFilterError, IndexError) as error:
        return [f"{name}: the key is not a readable OpenPGP public key: {error}"]
    if not found:
        return [f"{name}: the key file holds no OpenPGP public key"]
    unknown = [fingerprint for fingerprint in found if fingerprint not in wanted]
    if unknown:
        return [f"{name}: key fingerprint {', '.join(unknown)} is not the pinned {', '.join(wanted)}"]
    return []


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "apt_held_version": apt_held_version,
            "apt_versioned_names": apt_versioned_names,
            "apt_preferences": apt_preferences,
            "apt_unattended_blacklist": apt_unattended_blacklist,
            "apt_key_fingerprints": apt_key_fingerprints,
            "apt_key_problems": apt_key_problems,
        }
