"""Monitoring of the whole stack: every target up, an alert fires and resolves, operational endpoints private.

Prometheus and Alertmanager run on stack-mon1 (roles/monitoring), listening on its address on the
stack network; a webhook receiver there (molecule/shared/alert-receiver.yml) records what
Alertmanager sends. The timings come from inventory/local/group_vars/monitoring.yml (scrapes every
5 s, TFServingDown after 15 s down, notifications grouped for 5 s and repeated every 30 s).
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from conftest import SERVING_HOSTS, SITE_URLS, WEB_HOSTS

MONITOR = "stack-mon1"
RECEIVED = "/var/lib/tfsp-alert-receiver/alerts.jsonl"
#: Every job Prometheus must scrape here (no GPU: no dcgm job).
JOBS = {"node", "nginx", "tf_serving", "tf_serving_model", "web_app", "site", "prometheus", "alertmanager"}


def _address(host, name: str) -> str:
    facts = host(name).ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def _api(host, path: str) -> dict:
    monitor = host(MONITOR)
    result = monitor.run(f"curl -sf --max-time 5 'http://{_address(host, MONITOR)}:9090{path}'")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)["data"]


def _wait_for(check, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(3)


def test_every_target_is_up(host):
    def down():
        targets = _api(host, "/api/v1/targets")["activeTargets"]
        jobs = {target["labels"]["job"] for target in targets}
        unhealthy = [(t["labels"]["job"], t["labels"].get("instance"), t["health"]) for t in targets]
        unhealthy = [entry for entry in unhealthy if entry[2] != "up"]
        return (jobs, unhealthy) if jobs >= JOBS and not unhealthy else None

    found = _wait_for(down, 120)
    if not found:
        targets = _api(host, "/api/v1/targets")["activeTargets"]
        summary = [(t["labels"]["job"], t["labels"].get("instance"), t["lastError"]) for t in targets]
        pytest.fail(f"not every job present and up: {summary}")
    # Each serving and web host is a target of its jobs.
    targets = _api(host, "/api/v1/targets")["activeTargets"]
    instances = {(t["labels"]["job"], t["labels"].get("instance")) for t in targets}
    for name in SERVING_HOSTS:
        assert ("tf_serving", name) in instances
        assert ("node", name) in instances
    for name in WEB_HOSTS:
        assert ("web_app", name) in instances
        assert ("nginx", name) in instances


@pytest.mark.parametrize("job", ["site", "tf_serving_model"])
def test_probes_succeed(host, job):
    def values():
        result = _api(host, f"/api/v1/query?query=probe_success%7Bjob%3D%22{job}%22%7D")["result"]
        return [sample["value"][1] for sample in result]

    found = _wait_for(lambda: (v := values()) and set(v) == {"1"} and v, 60)
    assert found, f"probe_success of {job}: {values()}"


def _received(host) -> list[str]:
    return host(MONITOR).run(f"cat {RECEIVED}").stdout.splitlines()


def _notifications(host, status: str, after: int) -> list[dict]:
    """TFServingDown notifications for the first serving host, from line ``after`` of the receiver's log."""
    return [
        alert
        for line in _received(host)[after:]
        for alert in json.loads(line)["body"]["alerts"]
        if alert["labels"]["alertname"] == "TFServingDown"
        and alert["labels"].get("instance") == SERVING_HOSTS[0]
        and alert["status"] == status
    ]


def test_tf_serving_down_alert_fires_and_resolves(host):
    serving = host(SERVING_HOSTS[0])
    # Earlier tests stop TF Serving briefly too: only notifications after this stop count.
    _wait_for(lambda: not _notifications(host, "firing", 0) or _notifications(host, "resolved", 0), 150)
    seen = len(_received(host))
    assert serving.run("docker stop --time 10 tf-serving").rc == 0
    try:
        fired = _wait_for(lambda: _notifications(host, "firing", seen), 120)
    finally:
        assert serving.run("docker start tf-serving").rc == 0
    assert fired, "no firing TFServingDown notification for stack-tfs1 within 120 s"
    assert fired[0]["annotations"]["runbook"]
    resolved = _wait_for(lambda: _notifications(host, "resolved", seen), 150)
    assert resolved, "TFServingDown for stack-tfs1 did not resolve within 150 s of the restart"


@pytest.mark.parametrize("site", SITE_URLS)
def test_metrics_refused_through_the_public_site(site):
    # A positive control first: the same client gets the site's pages. The site's certificate is
    # the self-signed one the nginx role made.
    assert requests.get(f"{site}/healthz", timeout=10, verify=False).status_code == 200  # noqa: S501
    response = requests.get(f"{site}/metrics", timeout=10, verify=False)  # noqa: S501
    assert response.status_code == 403, response.text[:200]
    assert "tfsp_web_requests_total" not in response.text


#: An HTTP(S) GET from a host without curl (stack-outsider is in no group, so the base role never
#: installed it): prints the status code, or the error's name when nothing answered.
_GET = """
import ssl, sys, urllib.error, urllib.request
url, name = sys.argv[1], sys.argv[2]
context = ssl._create_unverified_context()
request = urllib.request.Request(url, headers={"Host": name})
try:
    print(urllib.request.urlopen(request, timeout=5, context=context).status)
except urllib.error.HTTPError as error:
    print(error.code)
except OSError as error:
    print(type(error).__name__)
"""


def _get(host, name: str, url: str, host_header: str = "localhost") -> str:
    result = host(name).run(f"python3 -c '{_GET}' '{url}' '{host_header}'")
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def test_metrics_listener_answers_the_monitoring_host_only(host):
    target = WEB_HOSTS[0]
    assert _get(host, MONITOR, f"http://{target}:9180/metrics") == "200"
    # Positive control: the outsider reaches the same host's site (its health page) with the same
    # client, so a refusal below is the firewall's, not a broken probe.
    assert _get(host, "stack-outsider", f"https://{target}/healthz") == "200"
    from_outsider = _get(host, "stack-outsider", f"http://{target}:9180/metrics")
    assert not from_outsider.isdigit(), f"stack-outsider got HTTP {from_outsider} from the metrics listener"
    assert _get(host, "stack-outsider", f"https://{target}/metrics") == "403"
