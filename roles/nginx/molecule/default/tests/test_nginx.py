"""nginx as a client sees it: real HTTPS requests made with curl on the host."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

NAME = f"nginx-{os.environ.get('MOLECULE_DISTRO', 'bookworm')}"
RESOLVE = f"--resolve {NAME}:443:127.0.0.1 --resolve {NAME}:80:127.0.0.1 --resolve evil.example:443:127.0.0.1"


def curl(host, args: str):
    """Run curl with -sk and the site's name resolving to this host."""
    return host.run(f"curl -sk --max-time 10 {RESOLVE} {args}")


def response_headers(host, url: str) -> dict[str, list[str]]:
    result = curl(host, f"-o /dev/null -D - {url}")
    assert result.rc == 0, result.stderr
    headers: dict[str, list[str]] = {}
    for line in result.stdout.splitlines()[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers.setdefault(key.strip().lower(), []).append(value.strip())
    return headers


def test_nginx_running_and_enabled(host):
    service = host.service("nginx")
    assert service.is_running
    assert service.is_enabled


def test_configuration_valid(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr


def test_proxied_request_carries_forwarded_headers(host):
    result = curl(host, f"-H 'X-Forwarded-For: 6.6.6.6' https://{NAME}/some/page")
    assert result.rc == 0, result.stderr
    echoed = json.loads(result.stdout)
    headers = {key.lower(): value for key, value in echoed["headers"].items()}
    assert echoed["path"] == "/some/page"
    assert headers["host"] == NAME
    assert headers["x-forwarded-host"] == NAME
    assert headers["x-forwarded-proto"] == "https"
    # At the edge a client-supplied X-Forwarded-For is replaced, not extended.
    assert headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize("path", ["/", "/static/probe.css"])
def test_security_headers(host, path):
    headers = response_headers(host, f"https://{NAME}{path}")
    assert headers["strict-transport-security"] == ["max-age=31536000; includeSubDomains"]
    assert headers["x-content-type-options"] == ["nosniff"]
    # The backend sends SAMEORIGIN: nginx's DENY replaces it.
    assert headers["x-frame-options"] == ["DENY"]
    assert headers["referrer-policy"] == ["same-origin"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"][0]
    assert headers["server"] == ["nginx"]


def test_static_files_served_with_long_cache(host):
    result = curl(host, f"-D - https://{NAME}/static/probe.css")
    assert "200" in result.stdout.splitlines()[0]
    assert "body { color: black; }" in result.stdout
    assert "Cache-Control: max-age=2592000" in result.stdout


def test_http_redirects_to_https(host):
    result = curl(host, f"-o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{NAME}/x?y=1")
    assert result.stdout == f"301 https://{NAME}/x?y=1"


def test_unknown_host_dropped_on_http(host):
    result = host.run("curl -s --max-time 10 -H 'Host: evil.example' http://127.0.0.1/")
    assert result.rc == 52  # empty reply: nginx closed the connection (444)


def test_unknown_server_name_refused_in_tls_handshake(host):
    result = curl(host, "https://evil.example/")
    assert result.rc == 35  # TLS handshake rejected


def test_unknown_host_header_over_tls_dropped(host):
    result = curl(host, f"-H 'Host: evil.example' -w '%{{http_code}}' https://{NAME}/")
    # Connection closed without any HTTP response: curl reports an empty reply
    # (52) or, with newer curl/OpenSSL, a receive failure (56).
    assert result.rc in (52, 56)
    assert result.stdout == "000"


def test_tls_12_and_13_accepted(host):
    for version in ("--tlsv1.2 --tls-max 1.2", "--tlsv1.3"):
        result = curl(host, f"{version} -o /dev/null -w '%{{http_code}}' https://{NAME}/")
        assert result.stdout == "200", version


def test_only_tls_12_and_newer_configured(host):
    config = host.run("nginx -T").stdout
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in config
    assert "server_tokens off;" in config


def test_request_body_limited(host):
    result = host.run(
        f"head -c 2000000 /dev/zero | curl -sk --max-time 10 {RESOLVE} -o /dev/null -w '%{{http_code}}' "
        f"--data-binary @- https://{NAME}/upload"
    )
    assert result.stdout == "413"


def status_codes(host, path: str, count: int) -> list[str]:
    one = f"curl -sk {RESOLVE} -o /dev/null -w '%{{http_code}}\\n' https://{NAME}{path}"
    loop = f"for i in $(seq {count}); do {one}; done"
    return host.run(loop).stdout.split()


def test_api_rate_limited(host):
    # Scenario: 1 request/s with a burst of 5 on /api/.
    codes = status_codes(host, "/api/v1/predict", 15)
    assert codes[0] == "200"
    assert "429" in codes
    assert set(status_codes(host, "/status", 15)) == {"200"}


def test_tls_key_private(host):
    key = host.file("/etc/nginx/tls/calculator-web.key")
    assert key.user == "root"
    assert key.mode == 0o600


def test_self_signed_certificate_names_the_site(host):
    subject = host.run("openssl x509 -noout -ext subjectAltName -in /etc/nginx/tls/calculator-web.crt")
    assert f"DNS:{NAME}" in subject.stdout


def test_broken_configuration_never_went_live(host):
    """side_effect.yml pushed an invalid directive: it must be nowhere in the live configuration."""
    assert "tfsp_no_such_directive" not in host.run("nginx -T").stdout
    assert host.run("systemctl is-failed nginx").stdout.strip() == "active"


def host_address(host) -> str:
    facts = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def test_metrics_answer_loopback_through_the_site(host):
    result = curl(host, f"-o /dev/null -w '%{{http_code}}' https://{NAME}/metrics")
    assert result.stdout == "200"


def test_metrics_refused_to_others_through_the_site(host):
    """From the host's own network address (not loopback, not a monitoring host): refused."""
    ip = host_address(host)
    result = host.run(
        f"curl -sk --max-time 10 --resolve {NAME}:443:{ip} -o /dev/null -w '%{{http_code}}' https://{NAME}/metrics"
    )
    assert result.stdout == "403"
    # Control: the same address reaches the rest of the site.
    result = host.run(
        f"curl -sk --max-time 10 --resolve {NAME}:443:{ip} -o /dev/null -w '%{{http_code}}' https://{NAME}/"
    )
    assert result.stdout == "200"


def test_metrics_listener_serves_only_metrics_with_the_site_name(host):
    result = host.run("curl -s --max-time 10 http://127.0.0.1:9180/metrics")
    echoed = json.loads(result.stdout)
    assert echoed["path"] == "/metrics"
    assert {key.lower(): value for key, value in echoed["headers"].items()}["host"] == NAME
    assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9180/status").stdout == "404"


def test_metrics_listener_refuses_others(host):
    ip = host_address(host)
    result = host.run(f"curl -s --max-time 10 -o /dev/null -w '%{{http_code}}' http://{ip}:9180/metrics")
    assert result.stdout == "403"


def test_stub_status_on_loopback_only(host):
    assert "Active connections" in host.run("curl -s --max-time 10 http://127.0.0.1:8080/stub_status").stdout
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening


# A second site, `supplied.tfsp.test`, added by side_effect.yml with a certificate and key
# supplied as variables, the certificate signed by a test CA made on the controller.
SUPPLIED = "supplied.tfsp.test"
SUPPLIED_DIR = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "supplied-tls"
TEST_CA = "/usr/local/share/tfsp-test-ca.crt"
ROLE_DIR = Path(__file__).resolve().parents[3]


def supplied_file(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((SUPPLIED_DIR / name).read_bytes())


def presented_certificate(host, server_name: str) -> tuple[str, str]:
    """SHA-256 fingerprint (hex, lower case) and issuer (RFC 2253) of the certificate nginx presents."""
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {server_name} </dev/null 2>/dev/null"
        " | openssl x509 -noout -fingerprint -sha256 -issuer -nameopt RFC2253"
    )
    assert result.rc == 0, result.stderr
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines())
    return fields["sha256 Fingerprint"].replace(":", "").lower(), fields["issuer"]


def test_supplied_certificate_presented(host):
    """nginx presents exactly the supplied certificate, issued by the test CA, not a self-signed one."""
    expected = supplied_file("server.crt")
    fingerprint, issuer = presented_certificate(host, SUPPLIED)
    assert fingerprint == expected.fingerprint(hashes.SHA256()).hex()
    assert issuer == supplied_file("ca.crt").subject.rfc4514_string() == "CN=TFSP test CA"
    # Control: the first site still presents its own, self-signed certificate.
    own_fingerprint, own_issuer = presented_certificate(host, NAME)
    assert own_fingerprint != fingerprint
    assert own_issuer == f"CN={NAME}"


def test_supplied_certificate_verifies_against_the_ca(host):
    """A client that trusts only the test CA gets the site, with hostname verification, and nothing else."""
    result = host.run(
        f"curl -s --max-time 10 --cacert {TEST_CA} --resolve {SUPPLIED}:443:127.0.0.1 "
        f"-o /dev/null -w '%{{http_code}}' https://{SUPPLIED}/status"
    )
    assert (result.rc, result.stdout) == (0, "200"), result.stderr
    verify = f"openssl s_client -connect 127.0.0.1:443 -servername {SUPPLIED} -CAfile {TEST_CA}"
    verify += " -verify_return_error"
    assert host.run(f"{verify} -verify_hostname {SUPPLIED} </dev/null").rc == 0
    # Controls: a name the certificate does not carry, and the self-signed site, fail verification.
    assert host.run(f"{verify} -verify_hostname other.tfsp.test </dev/null").rc != 0
    result = host.run(f"curl -s --max-time 10 --cacert {TEST_CA} {RESOLVE} -o /dev/null https://{NAME}/")
    assert result.rc == 60  # peer certificate cannot be authenticated


def test_supplied_certificate_and_key_installed_as_given(host):
    """The role wrote the supplied certificate and key, not a self-signed pair; the key is root's only."""
    certificate = host.file("/etc/nginx/tls/supplied-tls.crt")
    installed = x509.load_pem_x509_certificate(certificate.content)
    assert installed == supplied_file("server.crt")
    key = host.file("/etc/nginx/tls/supplied-tls.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert host.run("runuser -u www-data -- cat /etc/nginx/tls/supplied-tls.key").rc != 0
    # The key on the host is the supplied one: its public half is the certificate's.
    public_key = host.run("openssl pkey -pubout -in /etc/nginx/tls/supplied-tls.key")
    assert public_key.rc == 0, public_key.stderr
    expected = installed.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert public_key.stdout.strip() == expected.strip()


def test_half_tls_settings_wrote_nothing(host):
    """side_effect.yml gave a certificate without its key: the role stopped before writing anything for it."""
    assert not host.file("/etc/nginx/conf.d/half-tls.conf").exists
    assert not host.file("/etc/nginx/tls/half-tls.crt").exists
    assert not host.file("/etc/nginx/tls/half-tls.key").exists


def _tasks(tasks: list[dict]):
    for task in tasks:
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section, []))


def test_the_key_is_never_logged():
    """Every task of the role that handles the key's text has no_log; so has the key in the argument spec."""
    tasks = yaml.safe_load((ROLE_DIR / "tasks" / "main.yml").read_text())
    # Tasks, not blocks; the assert only compares the key's length.
    handling_the_key = [
        task
        for task in _tasks(tasks)
        if "nginx_tls_certificate_key" in yaml.safe_dump(task)
        and "block" not in task
        and "ansible.builtin.assert" not in task
    ]
    assert "Install the provided TLS key" in [task["name"] for task in handling_the_key]
    assert [task["name"] for task in handling_the_key if task.get("no_log") is not True] == []
    spec = yaml.safe_load((ROLE_DIR / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["nginx_tls_certificate_key"]["no_log"] is True
