"""The serving image runs under the tf_serving role's container hardening, as nobody.

The role starts TF Serving with no capabilities, ``no-new-privileges``, a read-only root file
system with a small ``noexec`` ``/tmp``, a process limit, Docker's init and, by default, the
numeric user nobody (``65534:65534``). The official image's entrypoint only starts
``tensorflow_model_server``, which reads ``/models`` and its configuration; the stand-in keeps
the same entrypoint contract. This test runs the image on this machine's engine with exactly
those settings and checks that the server still loads and answers, and that nothing in the
container holds a privilege. (The Molecule scenario and the local stack run the same settings
on a nested engine; roles/tf_serving/README.md.)
"""

from __future__ import annotations

import os

import pytest
import yaml
from standin_support import REPO_ROOT, calculator_model_base, docker, predict_add

pytestmark = pytest.mark.docker

NOBODY = "65534"
# What roles/tf_serving/tasks/serve.yml sets (its defaults), as `docker run` options.
HARDENING = (
    "--init",
    "--user", f"{NOBODY}:{NOBODY}",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges:true",
    "--read-only",
    "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=64m",
    "--pids-limit", "4096",
)  # fmt: skip


def _role_healthcheck(model_name: str) -> list[str]:
    """The container healthcheck command of roles/tf_serving/tasks/serve.yml, for one model.

    Read from the role itself, so that the image is checked for what the role runs in it
    (bash with /dev/tcp, printf, grep), whatever that becomes.
    """

    def found(node):
        if isinstance(node, dict):
            if isinstance(node.get("healthcheck"), dict):
                yield node["healthcheck"]["test"]
            for value in node.values():
                yield from found(value)
        elif isinstance(node, list):
            for value in node:
                yield from found(value)

    tasks = yaml.safe_load((REPO_ROOT / "roles/tf_serving/tasks/serve.yml").read_text())
    tests = {tuple(test) for test in found(tasks)}  # YAML aliases repeat one
    assert len(tests) == 1, tests
    kind, *command = tests.pop()
    assert kind == "CMD", kind
    return [part.replace("{{ tf_serving_models[0].name }}", model_name) for part in command]


def _world_readable(root) -> None:
    """The role ships models world-readable (0644 files, 0755 directories); do the same here."""
    for path, _dirs, files in os.walk(root):
        os.chmod(path, 0o755)  # noqa: S103 - world-readable on purpose, as the role ships models
        for name in files:
            os.chmod(os.path.join(path, name), 0o644)


@pytest.fixture(scope="module")
def hardened(tmp_path_factory, calculator_version, container_factory):
    base = calculator_model_base(tmp_path_factory, "hardened-models", calculator_version)
    _world_readable(base)
    return container_factory(base, env={"MODEL_NAME": "calculator"}, label="hardened", docker_args=HARDENING)


def _status_fields(container_name: str) -> list[dict[str, str]]:
    """Uid, CapEff, CapBnd and NoNewPrivs of every process in the container, read from /proc."""
    out = docker(
        "exec", container_name, "sh", "-c",
        "for f in /proc/[0-9]*/status; do grep -E '^(Name|Uid|CapEff|CapBnd|NoNewPrivs):' \"$f\"; echo; done",
    ).stdout  # fmt: skip
    processes = []
    for block in out.strip().split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        if fields:
            processes.append({key: value.strip() for key, value in fields.items()})
    return processes


def test_serves_predict_under_the_hardening(hardened):
    assert predict_add(hardened.channel) == [5.0]


def test_the_roles_healthcheck_passes_under_the_hardening(hardened):
    """The image has what the role's healthcheck runs, and the check passes as nobody."""
    result = docker("exec", hardened.name, *_role_healthcheck("calculator"), check=False)
    assert result.returncode == 0, result.stderr


def test_the_roles_healthcheck_fails_for_a_model_not_served(hardened):
    """A positive control: the same check tells an unavailable model from an available one."""
    result = docker("exec", hardened.name, *_role_healthcheck("not-served"), check=False)
    assert result.returncode != 0


def test_no_process_holds_a_privilege(hardened):
    processes = _status_fields(hardened.name)
    names = [process["Name"] for process in processes]
    # docker-init, the server, and the shell of this very check.
    assert len(processes) >= 2, names
    for process in processes:
        assert process["Uid"].split() == [NOBODY] * 4, process
        assert int(process["CapEff"], 16) == 0, process
        assert int(process["CapBnd"], 16) == 0, process
        assert process["NoNewPrivs"] == "1", process


def test_nothing_but_tmp_is_writable(hardened):
    for path in ("/probe", "/etc/probe", "/usr/local/probe"):
        # Even uid 0 writes nothing on the read-only root file system.
        result = docker("exec", "-u", "0", hardened.name, "touch", path, check=False)
        assert result.returncode != 0, path
    assert docker("exec", hardened.name, "sh", "-c", "touch /tmp/probe && rm /tmp/probe").returncode == 0


def test_a_positive_control_the_same_probe_sees_root(tmp_path_factory, calculator_version, container_factory):
    """Without the hardening the same /proc probe reports root with capabilities: it can tell."""
    base = calculator_model_base(tmp_path_factory, "default-models", calculator_version)
    plain = container_factory(base, env={"MODEL_NAME": "calculator"}, label="plain")
    processes = _status_fields(plain.name)
    assert any(process["Uid"].split()[0] == "0" and int(process["CapEff"], 16) != 0 for process in processes)
