"""The web tier on one host: gunicorn under systemd behind nginx, observed from outside."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The repository's molecule/shared: systemd_security.exposure, shared with nginx's tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "molecule" / "shared"))
from systemd_security import exposure

NAME = f"calc-{os.environ.get('MOLECULE_DISTRO', 'bookworm')}"
SOCKET = "/run/calculator-web/gunicorn.sock"
RESOLVE = f"--resolve {NAME}:443:127.0.0.1 --resolve {NAME}:80:127.0.0.1"


@pytest.fixture(scope="module")
def secret_key() -> str:
    key = (
        os.environ.get("CALCULATOR_WEB_TEST_SECRET_KEY")
        or (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "test-secret-key").read_text().split()[0]
    )
    assert len(key) >= 20
    return key


def curl(host, args: str):
    return host.run(f"curl -sk --max-time 10 {RESOLVE} {args}")


def test_socket_and_service_active(host):
    assert host.service("calculator-web.socket").is_running
    assert host.service("calculator-web.socket").is_enabled
    assert host.service("calculator-web.service").is_running
    assert host.service("calculator-web.service").is_enabled
    assert host.service("nginx").is_running


def test_socket_owned_for_nginx(host):
    socket = host.file(SOCKET)
    assert socket.is_socket
    assert socket.user == "calculator-web"
    assert socket.group == "www-data"
    assert socket.mode == 0o660


def test_health_through_socket(host):
    result = host.run(
        f"curl -s --max-time 10 --unix-socket {SOCKET} -w ' %{{http_code}}' http://localhost/healthz"
    )
    assert result.stdout.endswith(" 200"), result.stdout


def test_health_through_nginx(host):
    result = curl(host, f"-o /dev/null -w '%{{http_code}}' https://{NAME}/healthz")
    assert result.stdout == "200"


def test_home_page_through_nginx_with_security_headers(host):
    result = curl(host, f"-D - -o /dev/null https://{NAME}/")
    lines = result.stdout.lower().splitlines()
    assert lines[0].split()[1] == "200", result.stdout
    assert "x-frame-options: deny" in lines
    assert sum(line.startswith("x-frame-options") for line in lines) == 1
    assert any(line.startswith("strict-transport-security: max-age=") for line in lines)


def test_django_sees_https_through_nginx(host):
    # A plain-HTTP request on the socket is redirected by Django; through nginx
    # X-Forwarded-Proto says https, so no redirect loop.
    direct = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --unix-socket {SOCKET} http://localhost/")
    assert direct.stdout == "301"
    assert curl(host, f"-o /dev/null -w '%{{http_code}}' https://{NAME}/").stdout == "200"


def test_http_redirects_to_https(host):
    result = curl(host, f"-o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{NAME}/status")
    assert result.stdout == f"301 https://{NAME}/status"


def test_unknown_host_dropped(host):
    # No HTTP answer (444): a reset (curl 56, nginx's reset_timedout_connection) or a close (52).
    assert host.run("curl -s --max-time 10 -H 'Host: evil.example' http://127.0.0.1/").rc in (52, 56)


def test_collected_static_served_by_nginx_with_long_cache(host):
    listing = host.run("find /var/lib/calculator-web/static -type f -name '*.css' -printf '%P\\n'")
    found = listing.stdout.split()
    assert found, "collectstatic left no CSS file"
    result = curl(host, f"-D - -o /dev/null https://{NAME}/static/{found[0]}")
    assert " 200" in result.stdout.splitlines()[0]
    assert "cache-control: max-age=2592000" in result.stdout.lower()


def test_environment_file_root_only(host, secret_key):
    env = host.file("/etc/calculator-web/env")
    assert env.user == "root"
    assert env.group == "root"
    assert env.mode == 0o600
    assert f'DJANGO_SECRET_KEY="{secret_key}"' in env.content_string
    # The app user cannot read it; systemd hands the values to the service.
    assert host.run("runuser -u calculator-web -- cat /etc/hostname").rc == 0
    assert host.run("runuser -u calculator-web -- cat /etc/calculator-web/env").rc != 0


def test_release_routing_file_empty_and_readable_by_the_app(host):
    """No release until playbooks/release.yml writes one: calls carry no version label."""
    routing = host.file("/etc/calculator-web/routing.json")
    assert (routing.user, routing.group, routing.mode) == ("root", "root", 0o644)
    assert routing.content_string.strip() == "{}"
    assert (
        'TFSP_ROUTING_FILE="/etc/calculator-web/routing.json"'
        in host.file("/etc/calculator-web/env").content_string
    )
    assert host.run("runuser -u calculator-web -- cat /etc/calculator-web/routing.json").rc == 0


def test_workers_run_with_the_roles_grpc_experiments(host):
    """GRPC_EXPERIMENTS reaches the gunicorn workers (grpcio reads it when it starts)."""
    pids = host.run("pgrep -u calculator-web -f gunicorn").stdout.split()
    assert pids
    for pid in pids:
        environ = host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout.splitlines()
        assert "GRPC_EXPERIMENTS=-event_engine_client" in environ


def test_secret_not_in_process_list(host, secret_key):
    listing = host.run("ps auxww").stdout
    assert "gunicorn" in listing
    assert secret_key not in listing


def test_secret_not_in_journal(host, secret_key):
    journal = host.run("journalctl --no-pager -o cat").stdout
    assert "calculator" in journal
    assert secret_key not in journal


def test_secret_not_in_ansible_output(secret_key):
    log = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log").read_text(errors="replace")
    assert "Write the environment file" in log
    assert secret_key not in log


TLS_DIR = "/etc/calculator-web/tls"


def test_client_key_is_the_app_users_only(host):
    key = host.file(f"{TLS_DIR}/client.key")
    assert (key.user, key.group, key.mode) == ("calculator-web", "calculator-web", 0o600)
    assert host.file(f"{TLS_DIR}/client.crt").mode == 0o644
    assert host.run(f"runuser -u calculator-web -- test -r {TLS_DIR}/client.key").rc == 0
    assert host.run(f"runuser -u www-data -- test -r {TLS_DIR}/client.key").rc != 0
    env = host.file("/etc/calculator-web/env").content_string
    assert f'TFSP_TF_SERVING_TLS_KEY_FILE="{TLS_DIR}/client.key"' in env


def test_client_key_matches_the_controllers_and_never_appears_in_ansible_output(host):
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    key = (ephemeral / "pki" / "hosts" / f"{host.backend.get_hostname()}.client.key").read_text()
    assert host.file(f"{TLS_DIR}/client.key").content_string == key
    body = [line for line in key.splitlines() if not line.startswith("-----")]
    log = (ephemeral / "ansible.log").read_text(errors="replace")
    assert "Ship this host's private key" in log
    assert body
    assert not any(line in log for line in body)


VENV = "/opt/calculator-web/venv"


def installed(host) -> str:
    """The app virtualenv's packages as `pip list --format=freeze` prints them, lower-cased."""
    return host.run("/opt/calculator-web/bin/pip list --format=freeze").stdout.lower()


def test_no_tensorflow_on_web_host(host):
    python = f"{VENV}/bin/python"
    packages = installed(host)
    assert "grpcio==" in packages
    assert "tensorflow==" not in packages
    assert "tensorflow-cpu==" not in packages
    # The protos wheel provides the generated tensorflow.* messages only: no TensorFlow runtime.
    assert host.run(f"{python} -c 'import tensorflow_serving.apis.predict_pb2'").rc == 0
    assert host.run(f"{python} -c 'import tensorflow as tf; tf.constant'").rc != 0
    assert host.run(f"{python} -c 'import tensorflow.python'").rc != 0


def test_virtualenv_holds_only_what_the_app_runs(host):
    packages = installed(host)
    assert "django==" in packages
    # No installer in the runtime virtualenv: pip runs from the system, aimed at it.
    assert "pip==" not in packages
    assert "setuptools==" not in packages
    assert host.run(f"{VENV}/bin/python -c 'import pip'").rc != 0
    # Django's message catalogs are gone (USE_I18N is off); its locale formats stay.
    catalogs = host.run(f"find {VENV}/lib -path '*/django/*' -name LC_MESSAGES").stdout
    assert catalogs == ""
    assert host.run(f"{VENV}/bin/python -c 'import django.conf.locale.de.formats'").rc == 0
    size_kib = int(host.run(f"du -sk {VENV}").stdout.split()[0])
    assert size_kib < 80 * 1024, f"the web venv is {size_kib / 1024:.1f} MiB"


def test_workers_follow_cpu_count(host):
    cpus = int(host.run("nproc").stdout)
    master = host.run("systemctl show -p MainPID --value calculator-web.service").stdout.strip()
    workers = host.run(f"pgrep -c -P {master}").stdout.strip()
    assert int(workers) == 2 * cpus + 1


def test_workers_are_the_apps_sync_worker(host):
    # calculator_web_gunicorn_wake_one (on by default): gunicorn's sync worker woken one at a
    # time (calculator_web/gunicorn_worker.py), not gunicorn's own.
    journal = host.run("journalctl --no-pager -o cat -u calculator-web.service").stdout
    assert "Using worker: calculator_web.gunicorn_worker.SyncWorker" in journal


def test_no_gunicorn_access_log(host):
    # nginx logs every request; gunicorn's access log stays off.
    marker = "access-log-probe-7f3a"
    result = host.run(
        f"curl -s --max-time 10 --unix-socket {SOCKET} -o /dev/null http://localhost/healthz?{marker}"
    )
    assert result.rc == 0, result.stderr
    host.run("sleep 1")
    journal = host.run("journalctl --no-pager -o cat -u calculator-web.service").stdout
    assert marker not in journal


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("User", "calculator-web"),
        ("PrivateUsers", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("UMask", "0077"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallArchitectures", "native"),
    ],
)
def test_service_sandboxed(host, setting, value):
    assert host.run(f"systemctl show -p {setting} --value calculator-web.service").stdout.strip() == value


# The README records this figure; without the sandbox the unit scores 9.2 (UNSAFE).
APP_EXPOSURE_MAX = 2.0


def test_service_exposure_ok(host, record_property):
    """systemd's own score of the sandbox: 2.0 or less is "OK"; the app still serves (the tests above)."""
    score = exposure(host, "calculator-web.service")
    record_property("calculator_web_exposure", score)
    assert score <= APP_EXPOSURE_MAX


def test_system_calls_filtered(host):
    allowed = host.run("systemctl show -p SystemCallFilter --value calculator-web.service").stdout.split()
    # An allow list (@system-service) without the privileged and resource-control calls.
    assert "openat" in allowed
    assert "mount" not in allowed
    assert "setrlimit" not in allowed


def test_no_control_socket(host):
    """gunicorn's control socket is off: no error about the read-only home, nothing written there."""
    journal = host.run("journalctl --no-pager -o cat -u calculator-web.service").stdout
    assert "Booting worker" in journal
    assert "control socket" not in journal.lower()
    assert "Control server error" not in journal
    assert not host.file("/var/lib/calculator-web/.gunicorn").exists


def in_service_cgroup(host, command: str):
    """Run ``command`` inside calculator-web.service's cgroup, where the unit's IP address filter applies."""
    main_pid = host.run("systemctl show -p MainPID --value calculator-web.service").stdout.strip()
    # The unit's cgroup in the unified (v2) hierarchy, the one the filter is attached to: mounted at
    # /sys/fs/cgroup on a v2 host, at /sys/fs/cgroup/unified on a hybrid one.
    lines = host.file(f"/proc/{main_pid}/cgroup").content_string.splitlines()
    cgroup = next(line.split("::", 1)[1] for line in lines if line.startswith("0::"))
    procs = next(
        path
        for path in (f"/sys/fs/cgroup{cgroup}/cgroup.procs", f"/sys/fs/cgroup/unified{cgroup}/cgroup.procs")
        if host.file(path).exists
    )
    return host.run(f"sh -c 'echo $$ > {procs} && exec {command}'")


def test_service_reaches_only_allowed_addresses(host):
    """IPAddressDeny=any with localhost, the TF Serving hosts (none here) and the resolvers allowed."""
    show = host.run("systemctl show -p IPAddressDeny,IPAddressAllow calculator-web.service").stdout
    settings = dict(line.split("=", 1) for line in show.splitlines())
    assert set(settings["IPAddressDeny"].split()) == {"0.0.0.0/0", "::/0"}
    assert {"127.0.0.0/8", "::1/128"} <= set(settings["IPAddressAllow"].split())
    address = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]["ansible_default_ipv4"][
        "address"
    ]
    to_site = f"curl -sk --max-time 5 -o /dev/null -w %{{http_code}} --resolve {NAME}:443:"
    # Controls: from outside the unit the host's own address answers; inside it, loopback does.
    assert host.run(f"{to_site}{address} https://{NAME}/healthz").stdout == "200"
    assert in_service_cgroup(host, f"{to_site}127.0.0.1 https://{NAME}/healthz").stdout == "200"
    refused = in_service_cgroup(host, f"{to_site}{address} https://{NAME}/healthz")
    assert refused.rc != 0
    assert refused.stdout == "000"


def test_reload_is_graceful(host):
    master = host.run("systemctl show -p MainPID --value calculator-web.service").stdout.strip()
    workers_before = set(host.run(f"pgrep -P {master}").stdout.split())
    assert host.run("systemctl reload calculator-web.service").rc == 0
    host.run("sleep 3")
    assert host.run("systemctl show -p MainPID --value calculator-web.service").stdout.strip() == master
    workers_after = set(host.run(f"pgrep -P {master}").stdout.split())
    assert workers_after
    assert not workers_before & workers_after
    assert curl(host, f"-o /dev/null -w '%{{http_code}}' https://{NAME}/healthz").stdout == "200"


def test_socket_activation_restarts_stopped_service(host):
    assert host.run("systemctl stop calculator-web.service").rc == 0
    result = host.run(
        f"curl -s --max-time 20 -o /dev/null -w '%{{http_code}}' --unix-socket {SOCKET} http://localhost/healthz"
    )
    assert result.stdout == "200"
    assert host.service("calculator-web.service").is_running
