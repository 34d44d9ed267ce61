"""The app as deployed: the installed wheel under real gunicorn (collectstatic, production settings,
several workers, Prometheus multiprocess mode), driven by Debian's chromium through selenium."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import REPO_ROOT, StandIn, free_port

pytestmark = pytest.mark.docker

SCRIPTS = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("TFSP_SCREENSHOT_DIR", REPO_ROOT / "build" / "screenshots"))


@pytest.fixture(scope="module")
def gunicorn_url(standins: list[StandIn], tmp_path_factory) -> Iterator[str]:
    """Base URL of gunicorn serving the installed app against both stand-ins."""
    home = tmp_path_factory.mktemp("webapp")
    (home / "prometheus").mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_STATIC_ROOT": str(home / "static"),
        "TFSP_TF_SERVING_TARGETS": ",".join(c.grpc_target for c in standins),
        "PROMETHEUS_MULTIPROC_DIR": str(home / "prometheus"),
    }
    subprocess.run(
        [SCRIPTS / "calculator-web-manage", "collectstatic", "--noinput"], env=env, cwd=home, check=True,
        capture_output=True,
    )  # fmt: skip
    port = free_port()
    log = (home / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            SCRIPTS / "gunicorn", "calculator_web.wsgi:application",
            "--config", "python:calculator_web.gunicorn_conf",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--access-logfile", "-",
        ],
        env=env,
        cwd=home,  # the installed wheel, not the source tree
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError("gunicorn did not become ready:\n" + (home / "gunicorn.log").read_text())
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install chromium chromium-driver (make test-deps)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_fills_the_form_and_reads_7(browser, gunicorn_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(gunicorn_url + "/")
    assert "Calculator" in browser.title
    browser.find_element(By.ID, "id_a").send_keys("3")
    Select(browser.find_element(By.ID, "id_operation")).select_by_value("add")
    browser.find_element(By.ID, "id_b").send_keys("4")
    browser.find_element(By.ID, "calculate").click()
    # The click submits the form: wait for the answer page instead of racing its load.
    answer = WebDriverWait(browser, 15).until(
        expected_conditions.presence_of_element_located((By.ID, "answer"))
    )
    assert answer.text == "7"
    assert browser.find_element(By.ID, "model-version").text == "1"
    assert browser.find_element(By.ID, "elapsed").text.endswith(" ms")
    # the stylesheet really applied (served by whitenoise from collectstatic's hashed files)
    assert (
        browser.find_element(By.ID, "calculate").value_of_css_property("background-color")
        != "rgba(0, 0, 0, 0)"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "home.png"))


def test_browser_shows_a_readable_error(browser, gunicorn_url):
    from selenium.webdriver.common.by import By

    browser.get(gunicorn_url + "/?a=1,2&operation=add&b=3")
    assert "same length" in browser.find_element(By.ID, "form-errors").text
    browser.get(gunicorn_url + "/status")
    assert "v1 AVAILABLE" in browser.find_element(By.ID, "hosts").text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "status.png"))


def test_gunicorn_api_static_and_metrics(gunicorn_url):
    response = requests.post(
        f"{gunicorn_url}/api/v1/predict", json={"operation": "subtract", "a": 10, "b": 4}, timeout=5
    )
    assert response.status_code == 200
    assert response.json()["result"] == 6
    assert requests.post(f"{gunicorn_url}/api/v1/predict", data=b"x" * 300_000, timeout=5).status_code == 400
    page = requests.get(gunicorn_url + "/", timeout=5).text
    css = page.split('href="')[1].split('"')[0]
    assert css.startswith("/static/calculator_web/style.")
    assert css.endswith(".css")
    static = requests.get(gunicorn_url + css, timeout=5)
    assert static.status_code == 200
    assert "max-age" in static.headers["Cache-Control"]
    metrics = requests.get(f"{gunicorn_url}/metrics", timeout=5).text
    assert 'tfsp_web_requests_total{endpoint="api-predict",operation="subtract",status="200"}' in metrics
    assert 'tfsp_web_upstream_duration_seconds_count{call="subtract",version_label=""}' in metrics
    openapi = requests.get(f"{gunicorn_url}/api/v1/openapi.json", timeout=5).json()
    assert set(openapi["paths"]) >= {"/api/v1/predict", "/api/v1/classify", "/api/v1/regress"}
