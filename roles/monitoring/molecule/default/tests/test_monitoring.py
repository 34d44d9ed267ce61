"""The monitoring host as an operator sees it: services, listeners, valid configurations, targets
scraped, an alert delivered to the webhook receiver (prepare.yml), and Prometheus's alerts page in
a browser."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[5]
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "prometheus-alerts.png"
# prepare.yml's proxy to Prometheus's UI (which listens on loopback only), as an SSH tunnel would be.
PROMETHEUS_UI_PORT = 19090

SERVICES = [
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-blackbox-exporter",
    "prometheus-node-exporter",
    "prometheus-nginx-exporter",
]


def api(host, path: str) -> dict:
    result = host.run("curl -sf --max-time 5 http://127.0.0.1:9090%s", path)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)["data"]


def address(host) -> str:
    facts = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def wait_for(check, seconds: int = 90):
    """Poll ``check`` until it returns something truthy; return it, or the last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(3)


@pytest.mark.parametrize("name", SERVICES)
def test_service_running_and_enabled(host, name):
    service = host.service(name)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("port", [9090, 9093, 9115])
def test_operator_endpoints_on_loopback_only(host, port):
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_alertmanager_gossip_off(host):
    assert not host.socket("tcp://0.0.0.0:9094").is_listening
    assert not host.socket("tcp://9094").is_listening


@pytest.mark.parametrize("port", [9100, 9113])
def test_exporters_on_the_host_address_only(host, port):
    assert host.socket(f"tcp://{address(host)}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_configurations_valid(host):
    assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0


def test_alertmanager_secrets_not_world_readable(host):
    config = host.file("/etc/prometheus/alertmanager.yml")
    assert config.group == "prometheus"
    assert config.mode == 0o640


def test_scrape_jobs_generated_from_the_inventory(host):
    targets = api(host, "/api/v1/targets")["activeTargets"]
    by_job = {target["labels"]["job"]: target for target in targets}
    name = host.backend.get_hostname()
    ip = address(host)
    assert by_job["tf_serving"]["scrapeUrl"] == f"http://{ip}:8501/monitoring/prometheus/metrics"
    assert by_job["tf_serving"]["labels"]["instance"] == name
    assert by_job["tf_serving_model"]["labels"]["url"] == f"http://{ip}:8501/v1/models/calculator"
    assert by_job["web_app"]["scrapeUrl"] == f"http://{ip}:9180/metrics"
    assert "dcgm" not in by_job  # no GPU on this host


@pytest.mark.parametrize("job", ["node", "nginx", "prometheus", "alertmanager", "blackbox"])
def test_target_up(host, job):
    def healths():
        targets = api(host, "/api/v1/targets")["activeTargets"]
        return [t["health"] for t in targets if t["labels"]["job"] == job and t["health"] != "unknown"]

    assert wait_for(healths) == ["up"]


def test_nginx_exporter_reads_stub_status(host):
    metrics = host.run("curl -sf http://%s:9113/metrics", address(host)).stdout
    assert "nginx_up 1" in metrics


def test_model_directory_file_system_published(host):
    metrics = host.run("curl -sf http://%s:9100/metrics", address(host)).stdout
    assert 'tfsp_model_directory_info{mountpoint="/",path="/srv/tf-serving/models"} 1' in metrics


def test_every_rule_loaded(host):
    groups = api(host, "/api/v1/rules")["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    expected = {"TFServingDown", "TFServingModelNotAvailable", "SiteDown", "GPUMemoryNearlyFull"}
    assert expected <= alerts
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_alert_reaches_the_webhook_receiver(host):
    """Nothing serves TF Serving's port here: TFServingDown fires and is delivered with the token."""

    def delivered():
        log = host.run("cat /var/lib/tfsp-alert-receiver/alerts.jsonl").stdout
        records = [json.loads(line) for line in log.splitlines()]
        return [
            (record, alert)
            for record in records
            for alert in record["body"]["alerts"]
            if alert["labels"]["alertname"] == "TFServingDown" and alert["status"] == "firing"
        ]

    found = wait_for(delivered, seconds=120)
    assert found, "no TFServingDown notification arrived"
    record, alert = found[0]
    assert record["authorization"] == "Bearer molecule-token"
    assert alert["labels"]["instance"] == host.backend.get_hostname()
    assert alert["annotations"]["runbook"]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1200"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def test_browser_alerts_page_lists_the_rules(host, browser):
    """Prometheus's own alerts page, reached from its front page as an operator would: every group
    and alert of the role's rules listed, TFServingDown firing (the test above waited for it).
    Saves the README's screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    groups = api(host, "/api/v1/rules?type=alert")["groups"]
    names = {group["name"] for group in groups}
    names |= {rule["name"] for group in groups for rule in group["rules"]}
    assert {"tfsp-availability", "tfsp-capacity", "TFServingDown", "GPUTemperatureHigh"} <= names

    browser.get(f"http://{address(host)}:{PROMETHEUS_UI_PORT}/")
    assert "Prometheus" in browser.title
    browser.find_element(By.LINK_TEXT, "Alerts").click()

    def page() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    WebDriverWait(browser, 20).until(
        lambda _: all(name in page() for name in names),
        message=f"not every rule group and alert of {sorted(names)} is on the alerts page",
    )
    assert "TFServingDown (1 active)" in page()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))


def test_no_dcgm_exporter_without_gpu(host):
    assert not host.file("/etc/dcgm-exporter").exists
