"""End to end: the stack site.yml built, as a user and an operator see it.

The site is reached the way the demo reaches it: nginx on stack-web1, published
on localhost:18443. TF Serving on the GPU-role hosts is the stand-in image
(tests/standin), since the official image cannot be pulled here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import testinfra
import urllib3
from conftest import SERVING_HOSTS, WEB_HOSTS
from loadloop import LoadLoop

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

SITE = "https://localhost:18443"
REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT_DIR = REPO_ROOT / "docs" / "screenshots"


def _host(name: str):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def _site_session() -> requests.Session:
    """A client of the site (keeps its connection alive between requests)."""
    return requests.Session()


def _predict(operation="add", a=3, b=4, session: requests.Session | None = None) -> requests.Response:
    payload = {"operation": operation, "a": a, "b": b}
    # The site's certificate is the self-signed one the nginx role made. A
    # per-request verify=False, since a CA bundle named in the environment
    # would override the session's setting.
    return (session or _site_session()).post(
        f"{SITE}/api/v1/predict",
        json=payload,
        timeout=10,
        verify=False,
    )


def _serving_state(host_name: str) -> dict:
    """TF Serving's model status, asked on the serving host itself (REST port)."""
    # TF Serving publishes on the host's address on the stack network, which its
    # own name resolves to (not the inner Docker bridge's).
    result = _host(host_name).run("curl -sf http://$(hostname):8501/v1/models/calculator")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def _wait_serving(host_name: str, version: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = _serving_state(host_name)
            states = {int(v["version"]): v["state"] for v in last["model_version_status"]}
            if states.get(version) == "AVAILABLE":
                return
        except AssertionError:
            pass
        time.sleep(2)
    pytest.fail(f"{host_name}: version {version} not AVAILABLE within {timeout}s; last status {last}")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,900"):
        options.add_argument(argument)
    # The site's certificate is self-signed.
    options.add_argument("--ignore-certificate-errors")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_browser_computes_3_plus_4(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{SITE}/")
    browser.find_element(By.ID, "id_a").send_keys("3")
    Select(browser.find_element(By.ID, "id_operation")).select_by_value("add")
    browser.find_element(By.ID, "id_b").send_keys("4")
    browser.find_element(By.ID, "calculate").click()
    assert browser.find_element(By.ID, "answer").text.strip() == "7"
    assert browser.find_element(By.ID, "model-version").text.strip() == "1"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT_DIR / "home.png"))


def test_browser_status_page_lists_both_serving_hosts(browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{SITE}/status")
    hosts = browser.find_element(By.ID, "hosts").text
    # The public page names the hosts by position, never by their internal names.
    for number, name in enumerate(SERVING_HOSTS, start=1):
        assert f"serving host {number}" in hosts
        assert name not in browser.page_source
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT_DIR / "status.png"))


@pytest.mark.parametrize(
    ("operation", "a", "b", "expected"),
    [
        ("add", [1, 2.5], [3, -4], [4, -1.5]),
        ("subtract", 10, 4, 6),
        ("multiply", [-2, 3], [8, 0.5], [-16, 1.5]),
    ],
)
def test_json_api_through_nginx_over_https(operation, a, b, expected):
    response = _predict(operation, a, b)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == expected
    assert int(body["model_version"]) == 1
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_bad_input_is_a_400_with_a_message():
    response = _predict("add", [1, 2], [1])
    assert response.status_code == 400
    assert response.json()["error"]


def test_plain_http_redirects_to_https():
    web1 = _host("stack-web1")
    result = web1.run(
        "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: localhost' http://127.0.0.1/"
    )
    code, location = result.stdout.split(" ", 1)
    assert code == "301"
    assert location.startswith("https://localhost")


def test_requests_keep_succeeding_with_one_serving_host_stopped():
    serving = [v for v in _serving_state("stack-tfs1")["model_version_status"] if v["state"] == "AVAILABLE"]
    version = max(int(v["version"]) for v in serving)
    stopped = _host("stack-tfs1")
    assert stopped.run("docker stop --time 10 tf-serving").rc == 0
    try:
        session = _site_session()
        answers = [_predict(a=i, b=1, session=session) for i in range(40)]
        failures = [r.text for r in answers if r.status_code != 200]
        assert failures == []
        assert [r.json()["result"] for r in answers] == [i + 1 for i in range(40)]
    finally:
        assert stopped.run("docker start tf-serving").rc == 0
        _wait_serving("stack-tfs1", version)


def test_rollout_of_version_2_under_load_drops_nothing(site_urls):
    model_source = Path(os.environ["TFSP_MODEL_SOURCE"])
    export = subprocess.run(
        [
            *(str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "model_src.export"),
            *("--model-base", str(model_source.parent), "--name", model_source.name, "--version", "2"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert export.returncode == 0, export.stderr

    with LoadLoop(site_urls, clients_per_site=2, pace_seconds=0.05) as load:
        load.mark("rollout-start")
        rollout = subprocess.run(
            [
                *("ansible-playbook", "playbooks/deploy_model.yml"),
                *("-i", os.environ["MOLECULE_INVENTORY_FILE"]),
                *("-e", "tf_serving_rollout_model=calculator", "-e", "tf_serving_rollout_version=2"),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        load.mark("rollout-end")
        time.sleep(5)
    assert rollout.returncode == 0, rollout.stdout[-4000:] + rollout.stderr[-2000:]
    report = load.report
    report.assert_clean(
        min_requests=100,
        serving_hosts={f"{name}:8500" for name in SERVING_HOSTS},
        window=("rollout-start", "rollout-end"),
        min_in_window=50,
        versions={1, 2},
    )
    # Version 2 answered by the end, from both serving hosts.
    last = [record for record in report.records if record.started > report.marks["rollout-end"]]
    assert {record.model_version for record in last} == {2}, report.summary()
    for name in SERVING_HOSTS:
        _wait_serving(name, 2, timeout=5)


def _reaches(source: str, target: str, port: int) -> bool:
    return _host(source).run(f"timeout 5 bash -c '</dev/tcp/{target}/{port}'").rc == 0


@pytest.mark.parametrize("target", SERVING_HOSTS)
@pytest.mark.parametrize("port", [8500, 8501])
def test_only_web_hosts_reach_tf_serving(port, target):
    for name in WEB_HOSTS:
        assert _reaches(name, target, port), f"{name} cannot reach {target}:{port}"
    # Positive controls: the outsider resolves the serving host and reaches the site the same way,
    # so a refusal below is the firewall's, not a broken probe or network.
    assert _host("stack-outsider").run(f"getent hosts {target}").rc == 0
    assert _reaches("stack-outsider", "stack-web1", 443), "stack-outsider cannot reach stack-web1:443"
    assert not _reaches("stack-outsider", target, port), f"stack-outsider reached {target}:{port}"


# Run on a web host with the app's own Python (grpcio and TF Serving's protos, no TensorFlow): one
# GetModelStatus over TLS to a serving host, trusting the CA, with or without the host's client
# certificate. Prints OK or REFUSED and the gRPC status.
_GRPC_CALL = """
import sys, grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
tls = "/etc/calculator-web/tls/"
read = lambda name: open(tls + name, "rb").read()
pair = (read("client.key"), read("client.crt")) if sys.argv[2] == "cert" else (None, None)
channel = grpc.secure_channel(sys.argv[1], grpc.ssl_channel_credentials(read("ca.crt"), *pair))
request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "calculator"})
try:
    model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
except grpc.RpcError as error:
    print("REFUSED", error.code().name)
else:
    print("OK")
"""


@pytest.mark.parametrize("target", SERVING_HOSTS)
def test_tf_serving_serves_only_web_hosts_presenting_their_certificate(target):
    web = _host(WEB_HOSTS[0])
    script = "/tmp/grpc_call.py"  # a test host's scratch file
    web.run(f"cat > {script} <<'EOF'\n{_GRPC_CALL}\nEOF")
    python = "/opt/calculator-web/venv/bin/python"
    with_cert = web.run(f"{python} {script} {target}:8500 cert")
    without = web.run(f"{python} {script} {target}:8500 none")
    assert with_cert.stdout.strip() == "OK", with_cert.stdout + with_cert.stderr
    assert without.stdout.strip() == "REFUSED UNAVAILABLE", without.stdout + without.stderr
