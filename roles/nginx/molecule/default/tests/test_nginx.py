"""nginx as a client sees it: real HTTPS requests made with curl on the host."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# The repository's molecule/shared: systemd_security.exposure, shared with calculator_web's tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "molecule" / "shared"))
from systemd_security import exposure

NAME = f"nginx-{os.environ.get('MOLECULE_DISTRO', 'bookworm')}"
# systemd-analyze security's figure for nginx.service with the role's drop-in (see the README).
NGINX_EXPOSURE_MAX = 2.5
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


def echoed_headers(output: str) -> dict[str, str]:
    echoed = json.loads(output)
    return {key.lower(): value for key, value in echoed["headers"].items()}


def test_proxied_request_carries_forwarded_headers(host):
    """From the host's network address, which is no trusted proxy (the scenario trusts loopback only)."""
    ip = host_address(host)
    result = host.run(
        f"curl -sk --max-time 10 --resolve {NAME}:443:{ip} -H 'X-Forwarded-For: 6.6.6.6' https://{NAME}/some/page"
    )
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "/some/page"
    headers = echoed_headers(result.stdout)
    assert headers["host"] == NAME
    assert headers["x-forwarded-host"] == NAME
    assert headers["x-forwarded-proto"] == "https"
    # At the edge a client-supplied X-Forwarded-For is replaced, not extended,
    # and an untrusted peer's claim is not believed.
    assert headers["x-forwarded-for"] == ip
    assert headers["x-real-ip"] == ip


def test_client_address_from_a_trusted_proxy(host):
    """Loopback is a trusted proxy in this scenario: the client is the last untrusted address it reports."""
    result = curl(host, f"-H 'X-Forwarded-For: 6.6.6.6, 198.51.100.7' https://{NAME}/some/page")
    assert result.rc == 0, result.stderr
    headers = echoed_headers(result.stdout)
    assert headers["x-real-ip"] == "198.51.100.7"
    assert headers["x-forwarded-for"] == "198.51.100.7"


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
    result = host.run("curl -s --max-time 10 -H 'Host: evil.example' -w '%{http_code}' http://127.0.0.1/")
    # No HTTP answer at all (444): nginx resets the connection (reset_timedout_connection applies to
    # 444 too), which curl reports as a receive failure (56), or closes it, an empty reply (52).
    assert result.rc in (52, 56)
    assert result.stdout == "000"


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


# The limits of the scenario (molecule.yml), per client address: the API 1 request/s with a burst
# of 5, the pages 5/s with a burst of 10, the status paths 1/s with a burst of 2, 3 requests in
# progress at once. Each test below is a client of its own, named in X-Forwarded-For (loopback is a
# trusted proxy here), so one test's requests never count against another's.


def flood(host, path: str, count: int, client: str, options: str = "") -> list[tuple[str, dict, str]]:
    """``count`` requests in a row from ``client``: (status, headers, body) of each."""
    one = (
        f"curl -sk --max-time 10 {RESOLVE} -H 'X-Forwarded-For: {client}' {options}"
        f" -D $d/$i.h -o $d/$i.b 'https://{NAME}{path}'"
    )
    script = (
        f"d=$(mktemp -d); for i in $(seq {count}); do {one}; done;"
        f" for i in $(seq {count}); do cat $d/$i.h; echo '<<body>>'; cat $d/$i.b; echo '<<end>>'; done;"
        " rm -rf $d"
    )
    result = host.run(script)
    assert result.rc == 0, result.stderr
    answers = []
    for chunk in result.stdout.split("<<end>>")[:count]:
        head, body = chunk.strip("\n").split("<<body>>\n", 1)
        lines = head.strip().splitlines()
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        answers.append((lines[0].split()[1], headers, body))
    return answers


def codes_of(answers) -> list[str]:
    return [code for code, _, _ in answers]


def first_rejection(answers) -> tuple[dict, str]:
    rejected = [(headers, body) for code, headers, body in answers if code == "429"]
    assert rejected, codes_of(answers)
    return rejected[0]


def test_api_rate_limited_with_a_json_error(host):
    json_post = "-H 'Content-Type: application/json' -d '{}'"
    answers = flood(host, "/api/v1/predict", 15, "198.51.100.10", json_post)
    codes = codes_of(answers)
    assert codes[:6] == ["200"] * 6, codes
    assert codes.count("429") >= 5, codes
    headers, body = first_rejection(answers)
    assert headers["content-type"] == "application/json"
    document = json.loads(body)
    assert list(document) == ["error"]
    assert document["error"].startswith("Too many requests")
    assert headers["x-frame-options"] == "DENY"


def test_form_rate_limited_with_an_html_page(host):
    answers = flood(host, "/?operation=add&a=3&b=4", 60, "198.51.100.11")
    codes = codes_of(answers)
    assert codes[:11] == ["200"] * 11, codes
    # 60 requests in a row take well under the 10 s the rate needs to let them all through.
    assert codes.count("429") >= 15, codes
    headers, body = first_rejection(answers)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body.startswith("<!doctype html>")
    assert "<h1>Too many requests</h1>" in body
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(
    ("path", "client", "other_client"),
    [("/status", "198.51.100.12", "198.51.100.14"), ("/readyz", "198.51.100.13", "198.51.100.15")],
)
def test_status_paths_rate_limited(host, path, client, other_client):
    """Stricter than the pages: they ask every TF Serving host."""
    codes = codes_of(flood(host, path, 10, client))
    assert codes[:3] == ["200"] * 3, codes
    assert codes.count("429") >= 5, codes
    # The limits are per client: another one still gets through.
    assert codes_of(flood(host, path, 1, other_client)) == ["200"]


def test_static_files_not_limited(host):
    assert set(codes_of(flood(host, "/static/probe.css", 40, "198.51.100.16"))) == {"200"}


def test_requests_in_progress_limited(host):
    """Six requests at once to a backend path that takes 2 s: the connection limit (3) turns some away."""
    one = (
        f"curl -sk --max-time 10 {RESOLVE} -H 'X-Forwarded-For: 198.51.100.17' -o /dev/null"
        f" -w '%{{http_code}}\\n' https://{NAME}/slow/$i"
    )
    result = host.run(f"for i in 1 2 3 4 5 6; do {one} & done; wait")
    codes = sorted(result.stdout.split())
    assert len(codes) == 6, result.stdout
    assert codes.count("200") >= 3, codes
    assert codes.count("429") >= 1, codes


def test_slow_client_dropped_after_the_header_timeout(host):
    """A client that never ends its request headers is disconnected after client_header_timeout (3 s here)."""
    script = (
        'start=$(date +%s%N); exec 3<>/dev/tcp/127.0.0.1/80; printf "GET / HTTP/1.1\\r\\n" >&3;'
        " cat <&3 >/dev/null; echo $(( ($(date +%s%N) - start) / 1000000 ))"
    )
    result = host.run(f"timeout 30 bash -c '{script}'")
    assert result.rc == 0, result.stderr
    elapsed_ms = int(result.stdout.strip())
    assert 2500 <= elapsed_ms <= 10000, elapsed_ms


def test_client_timeouts_configured(host):
    config = host.run("nginx -T").stdout
    for directive in ("client_header_timeout 3s;", "client_body_timeout 10s;", "send_timeout 10s;"):
        assert directive in config
    assert "keepalive_timeout 30s;" in config


def test_nginx_service_sandboxed(host, record_property):
    """The drop-in confines nginx as far as a root master allows; it still serves (every test above)."""
    assert host.file("/etc/systemd/system/nginx.service.d/tfsp-sandbox.conf").exists
    show = host.run("systemctl show -p ProtectSystem,NoNewPrivileges,CapabilityBoundingSet nginx").stdout
    assert "ProtectSystem=strict" in show
    assert "NoNewPrivileges=yes" in show
    assert "cap_sys_admin" not in show.lower()
    assert "cap_net_bind_service" in show.lower()
    # Without the drop-in nginx scores 9.6 (UNSAFE).
    score = exposure(host, "nginx.service")
    record_property("nginx_exposure", score)
    assert score <= NGINX_EXPOSURE_MAX
    # The master is root (ports 80/443, the TLS key); the workers are www-data.
    master = host.run("systemctl show -p MainPID --value nginx").stdout.strip()
    assert host.run(f"ps -o user= -p {master}").stdout.strip() == "root"
    workers = host.run(f"ps -o user= --ppid {master}").stdout.split()
    assert workers
    assert set(workers) == {"www-data"}


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
