"""What the GPU roles install and write, rendered by Ansible from the roles' own files.

The Molecule scenarios run Debian on a machine without a GPU; this renders, for Debian 12 and
Ubuntu 24.04 and for GPU hosts, the package lists, apt holds, unattended-upgrades blacklists and
daemon.json that nvidia_driver and container_runtime compute (their vars/ files, from defaults,
settings and host facts). One ansible-playbook run on the controller's implicit localhost: one
play per case, the role's defaults and vars files as vars_files, the host's facts as a play
variable, the case's settings as task variables (above both), and the rendered values written as
JSON into a temporary directory. Nothing else is touched.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = (
    shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
)

BOOKWORM = {
    "distribution": "Debian",
    "distribution_release": "bookworm",
    "architecture": "x86_64",
    "kernel": "6.1.0-50-amd64",
}
NOBLE = {
    "distribution": "Ubuntu",
    "distribution_release": "noble",
    "architecture": "x86_64",
    "kernel": "6.11.0-26-generic",
}


def installed(versions: dict[str, str]) -> dict:
    """``package_facts``' ``packages`` for packages installed at ``versions``."""
    return {name: [{"version": version, "source": "apt"}] for name, version in versions.items()}


NVIDIA_RENDERED = [
    "nvidia_driver_install_packages",
    "nvidia_driver_preferences",
    "nvidia_driver_unattended_conf",
    "nvidia_driver_dkms_module",
]
RUNTIME_RENDERED = [
    "container_runtime_preferences",
    "container_runtime_unattended_conf",
    "container_runtime_daemon_json",
]

# case: (role, facts, settings, rendered names)
CASES = {
    "debian-held-installed": (
        "nvidia_driver",
        BOOKWORM
        | {
            "packages": installed(
                {
                    "nvidia-kernel-dkms": "535.261.03-1",
                    "linux-image-amd64": "6.1.176-1",
                    "linux-image-cloud-amd64": "6.1.176-1",
                }
            )
        },
        {},
        NVIDIA_RENDERED,
    ),
    "debian-upgrade-asked": (
        "nvidia_driver",
        BOOKWORM
        | {"packages": installed({"nvidia-kernel-dkms": "535.261.03-1", "linux-image-amd64": "6.1.176-1"})},
        {"nvidia_driver_version": "535.309.01-0+deb12u1"},
        NVIDIA_RENDERED,
    ),
    "debian-new-host": (
        "nvidia_driver",
        BOOKWORM | {"packages": {}},
        {"nvidia_driver_kernel_headers_package": ""},
        NVIDIA_RENDERED,
    ),
    "ubuntu-noble-hwe": (
        "nvidia_driver",
        NOBLE
        | {
            "packages": installed(
                {
                    "linux-image-generic-hwe-24.04": "6.11.0-26.26~24.04.1",
                    "nvidia-dkms-570-server": "570.133.20-0ubuntu0.24.04.1",
                }
            )
        },
        {},
        NVIDIA_RENDERED,
    ),
    "ubuntu-noble-new-host": (
        "nvidia_driver",
        NOBLE | {"packages": {}},
        {"nvidia_driver_ubuntu_branch": "575", "nvidia_driver_ubuntu_headless": False},
        NVIDIA_RENDERED,
    ),
    "runtime-distro-gpu": (
        "container_runtime",
        BOOKWORM
        | {
            "packages": installed(
                {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6", "nvidia-container-toolkit": "1.17.8-1"}
            ),
            "ansible_local": {"nvidia_gpu": {"count": 8}},
        },
        {
            "container_runtime_daemon_json_current": {
                "content": base64.b64encode(
                    json.dumps(
                        {
                            "default-runtime": "nvidia",
                            "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
                            "debug": False,
                        }
                    ).encode()
                ).decode()
            }
        },
        RUNTIME_RENDERED,
    ),
    "runtime-upstream-gpu-nvidia-default": (
        "container_runtime",
        NOBLE | {"packages": {}, "ansible_local": {"nvidia_gpu": {"count": 1}}},
        {
            "container_runtime_docker_source": "upstream",
            "container_runtime_docker_version": "5:28.1.1-1~ubuntu.24.04~noble",
            "container_runtime_containerd_version": "1.7.27-1",
            "container_runtime_nvidia_toolkit_version": "1.17.8-1",
            "container_runtime_nvidia_default_runtime": True,
            "container_runtime_daemon_json_current": {"failed": False, "msg": "file not found"},
        },
        RUNTIME_RENDERED,
    ),
}


def _play(name: str, role: str, facts: dict, settings: dict, rendered: list[str], out: Path) -> dict:
    # The stack role's defaults first: the roles' own defaults read the values shared there.
    vars_files = [
        str(REPO / "roles/stack/defaults/main.yml"),
        str(REPO / f"roles/{role}/defaults/main.yml"),
        str(REPO / f"roles/{role}/vars/main.yml"),
    ]
    if role == "nvidia_driver":
        vars_files.append(str(REPO / f"roles/{role}/vars/{facts['distribution']}.yml"))
    content = "{{ {" + ", ".join(f"'{var}': {var}" for var in rendered) + "} | to_json }}"
    return {
        "name": name,
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"ansible_facts": facts},
        "vars_files": vars_files,
        "tasks": [
            {
                "name": f"Render {name}",
                "ansible.builtin.copy": {
                    "content": content,
                    "dest": str(out / f"{name}.json"),
                    "mode": "0644",
                },
                "vars": settings,
            }
        ],
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("rendered")
    playbook = root / "render.yml"
    playbook.write_text(json.dumps([_play(name, *case, root) for name, case in CASES.items()]))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(root / "facts"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    interpreter = f"ansible_python_interpreter={sys.executable}"
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", interpreter, str(playbook)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {name: json.loads((root / f"{name}.json").read_text()) for name in CASES}


def test_debian_installs_the_driver_and_the_headers_of_each_kernel_flavour(rendered):
    case = rendered["debian-held-installed"]
    assert case["nvidia_driver_install_packages"] == [
        "nvidia-driver",
        "nvidia-kernel-dkms",
        "firmware-nvidia-gsp",
        "nvidia-smi",
        "libcuda1",
        "nvidia-persistenced",
        "linux-headers-amd64",
        "linux-headers-cloud-amd64",
        "linux-headers-6.1.0-50-amd64",
        "initramfs-tools",
        "kmod",
    ]
    assert case["nvidia_driver_dkms_module"] == "nvidia-current"


def test_debian_holds_the_installed_driver(rendered):
    pin = rendered["debian-held-installed"]["nvidia_driver_preferences"]
    assert "Package: src:nvidia-graphics-drivers\nPin: version 535.261.03-1\nPin-Priority: 1001\n" in pin


def test_an_upgrade_is_the_version_variable(rendered):
    case = rendered["debian-upgrade-asked"]
    driver = [name for name in case["nvidia_driver_install_packages"] if "=" in name]
    assert driver == [
        f"{name}=535.309.01-0+deb12u1"
        for name in ("nvidia-driver", "nvidia-kernel-dkms", "firmware-nvidia-gsp", "nvidia-smi", "libcuda1")
    ]
    assert "Pin: version 535.309.01-0+deb12u1\n" in case["nvidia_driver_preferences"]


def test_a_new_host_holds_nothing_yet_and_gets_the_default_flavour(rendered):
    case = rendered["debian-new-host"]
    assert case["nvidia_driver_preferences"] == ""
    assert "linux-headers-amd64" in case["nvidia_driver_install_packages"]


@pytest.mark.parametrize("case", ["debian-held-installed", "ubuntu-noble-hwe"])
def test_the_driver_is_kept_out_of_unattended_upgrades(rendered, case):
    conf = rendered[case]["nvidia_driver_unattended_conf"]
    assert 'Unattended-Upgrade::Package-Blacklist {\n    ".*nvidia";\n    "^libcuda";' in conf


def test_ubuntu_noble_installs_the_server_branch_and_the_hwe_headers(rendered):
    case = rendered["ubuntu-noble-hwe"]
    assert case["nvidia_driver_install_packages"] == [
        "nvidia-headless-570-server",
        "nvidia-utils-570-server",
        "linux-headers-generic-hwe-24.04",
        "linux-headers-6.11.0-26-generic",
        "initramfs-tools",
        "kmod",
    ]
    assert case["nvidia_driver_dkms_module"] == "nvidia-srv"
    assert (
        "Package: src:nvidia-graphics-drivers-570-server\nPin: version 570.133.20-0ubuntu0.24.04.1\n"
        in case["nvidia_driver_preferences"]
    )


def test_ubuntu_branch_and_full_driver_and_generic_headers(rendered):
    case = rendered["ubuntu-noble-new-host"]
    assert case["nvidia_driver_install_packages"][:2] == ["nvidia-driver-575-server", "linux-headers-generic"]
    assert case["nvidia_driver_preferences"] == ""


def test_docker_and_toolkit_held_at_the_installed_versions(rendered):
    case = rendered["runtime-distro-gpu"]
    pin = case["container_runtime_preferences"]
    assert "Package: docker.io\nPin: version 20.10.24+dfsg1-1+deb12u1+b6\nPin-Priority: 1001\n" in pin
    assert (
        "Package: nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools "
        "libnvidia-container1\nPin: version 1.17.8-1\n" in pin
    )
    for entry in (
        "^docker.io$",
        "^containerd$",
        "^runc$",
        "^nvidia-container-toolkit",
        "^libnvidia-container",
    ):
        assert f'    "{entry}";\n' in case["container_runtime_unattended_conf"]


def test_gpu_host_loses_the_old_nvidia_default_runtime_and_keeps_the_runtime(rendered):
    daemon = rendered["runtime-distro-gpu"]["container_runtime_daemon_json"]
    assert "default-runtime" not in daemon
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert daemon["debug"] is False
    assert daemon["live-restore"] is True


def test_upstream_docker_containerd_and_toolkit_at_the_versions_asked_for(rendered):
    case = rendered["runtime-upstream-gpu-nvidia-default"]
    pin = case["container_runtime_preferences"]
    assert "Package: docker-ce docker-ce-cli\nPin: version 5:28.1.1-1~ubuntu.24.04~noble\n" in pin
    assert "Package: containerd.io\nPin: version 1.7.27-1\n" in pin
    assert "Pin: version 1.17.8-1\n" in pin
    assert '    "^docker-ce";\n    "^containerd.io$";\n' in case["container_runtime_unattended_conf"]
    # Asked for explicitly, on a GPU host with the toolkit: nvidia is the default runtime.
    assert case["container_runtime_daemon_json"]["default-runtime"] == "nvidia"
