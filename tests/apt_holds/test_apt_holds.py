"""Held versions, their apt configuration and pinned repository keys (plugins/filter/apt_holds.py).

The key tests read real public keys: two Debian archive keys (keys/, armored as Debian ships them
in /etc/apt/trusted.gpg.d), and keys gpg makes on the spot, whose fingerprints gpg itself reports.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/apt_holds.py"
_spec = importlib.util.spec_from_file_location("apt_holds", PLUGIN)
ah = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ah)

KEYS = Path(__file__).resolve().parent / "keys"
# Published by Debian (https://ftp-master.debian.org/keys.html) and reported by gpg --show-keys.
BOOKWORM_STABLE = "4D64 FEC1 19C2 0290 67D6  E791 F8D2 585B 8783 D481"
TRIXIE_AUTOMATIC = "04B54C3CDCA79751B16BC6B5225629DF75B188BD"


def b64(data: bytes) -> str:
    """What slurp returns for a file holding ``data``."""
    return base64.b64encode(data).decode()


def key(name: str) -> bytes:
    return (KEYS / name).read_bytes()


# --- held versions ---------------------------------------------------------------------------


def test_held_version_is_the_requested_one():
    facts = {"docker.io": [{"version": "20.10.24+dfsg1-1+deb12u1+b6"}]}
    assert ah.apt_held_version("26.1.5+dfsg1-9", facts, "docker.io") == "26.1.5+dfsg1-9"


def test_held_version_is_the_installed_one_when_none_is_requested():
    facts = {"docker.io": [{"version": "20.10.24+dfsg1-1+deb12u1+b6", "source": "apt"}]}
    assert ah.apt_held_version("", facts, "docker.io") == "20.10.24+dfsg1-1+deb12u1+b6"


def test_nothing_is_held_before_anything_is_installed():
    assert ah.apt_held_version("", {}, "docker.io") == ""
    assert ah.apt_held_version(None, None, "docker.io") == ""


def test_versioned_names_only_where_a_version_is_asked_for():
    names = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin"]
    versions = {
        "docker-ce": "5:28.1.1-1~debian.12~bookworm",
        "docker-ce-cli": "5:28.1.1-1~debian.12~bookworm",
    }
    assert ah.apt_versioned_names(names, versions | {"containerd.io": ""}) == [
        "docker-ce=5:28.1.1-1~debian.12~bookworm",
        "docker-ce-cli=5:28.1.1-1~debian.12~bookworm",
        "containerd.io",
        "docker-buildx-plugin",
    ]


def test_versioned_names_refuse_what_is_not_a_version():
    with pytest.raises(ah.AnsibleFilterError, match="not an apt version"):
        ah.apt_versioned_names(["docker.io"], {"docker.io": "20.10 --allow-unauthenticated"})


# --- apt preferences ---------------------------------------------------------------------------


def test_preferences_hold_each_entry_at_priority_1001():
    text = ah.apt_preferences(
        [
            {"packages": ["src:nvidia-graphics-drivers"], "version": "535.261.03-1", "why": "driver"},
            {"packages": ["docker-ce", "docker-ce-cli"], "version": "5:28.1.1-1~debian.12~bookworm"},
        ],
        "test",
    )
    stanzas = text.strip().split("\n\n")
    assert len(stanzas) == 2
    assert stanzas[0].splitlines()[-4:] == [
        "Explanation: driver",
        "Package: src:nvidia-graphics-drivers",
        "Pin: version 535.261.03-1",
        "Pin-Priority: 1001",
    ]
    assert "Package: docker-ce docker-ce-cli\nPin: version 5:28.1.1-1~debian.12~bookworm\n" in stanzas[1]
    assert all(
        line.split(":", 1)[0] in {"Explanation", "Package", "Pin", "Pin-Priority"}
        for line in text.splitlines()
        if line
    )


def test_preferences_leave_out_what_has_no_version_and_are_empty_without_any():
    holds = [{"packages": ["nvidia-container-toolkit"], "version": ""}]
    assert ah.apt_preferences(holds, "test") == ""
    text = ah.apt_preferences([*holds, {"packages": ["docker.io"], "version": "20.10.*"}], "test")
    assert "nvidia-container-toolkit" not in text
    assert "Pin: version 20.10.*" in text


@pytest.mark.parametrize(
    "hold",
    [
        {"packages": ["docker.io"], "version": "1.0\nPackage: *"},
        {"packages": ["docker.io"], "version": "1.0 2.0"},
        {"packages": ["docker.io\nPin: version 1"], "version": "1.0"},
        {"packages": [], "version": "1.0"},
    ],
)
def test_preferences_refuse_what_would_break_the_stanza(hold):
    with pytest.raises(ah.AnsibleFilterError, match="test: not"):
        ah.apt_preferences([hold], "test")


STATUS = """\
Package: nvidia-driver
Status: install ok installed
Version: 535.261.03-1
Source: nvidia-graphics-drivers
Architecture: amd64
Maintainer: Test <test@example.invalid>
Description: installed driver

Package: docker.io
Status: install ok installed
Version: 20.10.24+dfsg1-1+deb12u1+b6
Source: docker.io (20.10.24+dfsg1-1+deb12u1)
Architecture: amd64
Maintainer: Test <test@example.invalid>
Description: installed engine

"""


def _apt_policy(tmp_path: Path, preferences: str, *packages: str) -> str:
    """``apt-cache policy`` in an apt tree with no sources, only a dpkg status and the preferences."""
    for directory in (
        "etc/apt/preferences.d",
        "etc/apt/apt.conf.d",
        "var/lib/dpkg",
        "var/lib/apt/lists/partial",
    ):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(STATUS)
    (tmp_path / "etc/apt/sources.list").write_text("")
    (tmp_path / "etc/apt/preferences.d/held.pref").write_text(preferences)
    (tmp_path / "apt.conf").write_text(
        f'Dir "{tmp_path}/";\nDir::State::status "{tmp_path}/var/lib/dpkg/status";\n'
        f'Dir::Cache "{tmp_path}/var/cache/apt/";\n'
    )
    result = subprocess.run(
        ["apt-cache", "policy", *packages],
        env=dict(os.environ, APT_CONFIG=str(tmp_path / "apt.conf")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(
    shutil.which("apt-cache") is None, reason="apt-cache is not installed (not a Debian controller)"
)
def test_apt_applies_the_holds(tmp_path):
    """apt itself reads the text: the held versions get priority 1001, and only they."""
    text = ah.apt_preferences(
        [
            {"packages": ["src:nvidia-graphics-drivers"], "version": "535.*"},
            {"packages": ["docker.io"], "version": "26.1.*"},
        ],
        "t",
    )
    policy = _apt_policy(tmp_path, text, "nvidia-driver", "docker.io")
    driver, engine = policy.split("docker.io:")
    assert " *** 535.261.03-1 1001" in driver
    assert " *** 20.10.24+dfsg1-1+deb12u1+b6 100" in engine


# --- unattended-upgrades ----------------------------------------------------------------------


def test_blacklist_is_one_apt_list():
    text = ah.apt_unattended_blacklist(["^docker.io$", "^containerd"], "test")
    assert 'Unattended-Upgrade::Package-Blacklist {\n    "^docker.io$";\n    "^containerd";\n};' in text


@pytest.mark.parametrize("patterns", [[], ['a"; "b'], ["two words"], ["x;"]])
def test_blacklist_refuses_entries_that_break_the_list(patterns):
    with pytest.raises(ah.AnsibleFilterError, match="test: not usable"):
        ah.apt_unattended_blacklist(patterns, "test")


@pytest.mark.skipif(
    shutil.which("apt-config") is None, reason="apt-config is not installed (not a Debian controller)"
)
def test_apt_reads_the_blacklist(tmp_path):
    (tmp_path / "held.conf").write_text(ah.apt_unattended_blacklist([".*nvidia", "^libcuda"], "test"))
    result = subprocess.run(
        ["apt-config", "-c", str(tmp_path / "held.conf"), "dump", "Unattended-Upgrade::Package-Blacklist"],
        env=dict(os.environ, APT_CONFIG="/dev/null"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert 'Unattended-Upgrade::Package-Blacklist:: ".*nvidia";' in result.stdout
    assert 'Unattended-Upgrade::Package-Blacklist:: "^libcuda";' in result.stdout


# --- repository keys --------------------------------------------------------------------------


def test_fingerprint_of_an_armored_ed25519_key():
    assert ah.apt_key_fingerprints(b64(key("debian-archive-bookworm-stable.asc"))) == [
        BOOKWORM_STABLE.replace(" ", "")
    ]


def test_fingerprint_of_an_armored_rsa_key_with_a_subkey():
    # The subkey's fingerprint is not the key's: only primary keys are reported.
    assert ah.apt_key_fingerprints(b64(key("debian-archive-trixie-automatic.asc"))) == [TRIXIE_AUTOMATIC]


def test_fingerprint_of_a_binary_key_and_of_plain_content():
    armored = key("debian-archive-bookworm-stable.asc").decode()
    binary = ah._dearmor(armored.encode())
    assert binary[0] & 0x80
    assert ah.apt_key_fingerprints(b64(binary)) == [BOOKWORM_STABLE.replace(" ", "")]
    assert ah.apt_key_fingerprints(armored, encoded=False) == [BOOKWORM_STABLE.replace(" ", "")]


def _new_format(binary: bytes) -> bytes:
    """The same packets with new-format headers (RFC 9580 4.2.1), as some tools write them."""
    out = b""
    for tag, body in ah._packets(binary):
        length = len(body)
        if length < 192:
            header = bytes([length])
        elif length < 8384:
            header = bytes([((length - 192) >> 8) + 192, (length - 192) & 0xFF])
        else:
            header = b"\xff" + length.to_bytes(4, "big")
        out += bytes([0xC0 | tag]) + header + body
    return out


def test_fingerprint_with_new_format_packet_headers():
    binary = ah._dearmor(key("debian-archive-trixie-automatic.asc"))
    assert ah.apt_key_fingerprints(b64(_new_format(binary))) == [TRIXIE_AUTOMATIC]


def test_key_matching_its_pin_has_no_problem():
    assert (
        ah.apt_key_problems(b64(key("debian-archive-bookworm-stable.asc")), [BOOKWORM_STABLE], "repo") == []
    )


def test_a_key_other_than_the_pinned_one_is_refused_in_one_line():
    problems = ah.apt_key_problems(
        b64(key("debian-archive-trixie-automatic.asc")), [BOOKWORM_STABLE], "Docker"
    )
    assert problems == [
        f"Docker: key fingerprint {TRIXIE_AUTOMATIC} is not the pinned {BOOKWORM_STABLE.replace(' ', '')}"
    ]


def test_an_extra_key_beside_the_pinned_one_is_refused():
    both = key("debian-archive-bookworm-stable.asc") + key("debian-archive-trixie-automatic.asc")
    assert ah.apt_key_fingerprints(b64(both)) == [BOOKWORM_STABLE.replace(" ", ""), TRIXIE_AUTOMATIC]
    problems = ah.apt_key_problems(b64(both), [BOOKWORM_STABLE], "NVIDIA")
    assert len(problems) == 1
    assert TRIXIE_AUTOMATIC in problems[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b64(b"<html>Not Found</html>"), "not a readable OpenPGP public key"),
        (b64(b""), "holds no OpenPGP public key"),
        (b64(b"-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n"), "not a readable"),
    ],
)
def test_what_is_not_a_key_is_refused(content, expected):
    problems = ah.apt_key_problems(content, [BOOKWORM_STABLE], "repo")
    assert len(problems) == 1
    assert expected in problems[0]


def test_a_malformed_pin_is_refused():
    problems = ah.apt_key_problems(b64(key("debian-archive-bookworm-stable.asc")), ["8783D481"], "repo")
    assert problems == ["repo: the pinned fingerprints are not 40 or 64 hex digits: ['8783D481']"]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed: it is the oracle of this test")
@pytest.mark.parametrize("algorithm", ["rsa2048", "ed25519"])
def test_fingerprints_agree_with_gpg_on_a_new_key(tmp_path, algorithm):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--quiet",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]
    subprocess.run(
        [*gpg, "--quick-generate-key", "Test Repository <repo@example.invalid>", algorithm, "sign", "1d"],
        check=True,
    )
    armored = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    listing = subprocess.run(
        [*gpg, "--with-colons", "--fingerprint", "--list-keys"], check=True, capture_output=True, text=True
    ).stdout
    expected = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][:1]
    assert ah.apt_key_fingerprints(b64(armored)) == expected
    assert ah.apt_key_problems(b64(armored), expected, "repo") == []
