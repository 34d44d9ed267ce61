"""Bad TF Serving settings stop the app at start-up with one line naming the setting, no traceback.

Run as gunicorn runs the app (importing ``calculator_web.wsgi``) in a fresh process with the
production settings module; and once through gunicorn itself, whose arbiter must stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port

APP_DIR = Path(__file__).resolve().parents[1]
GOOD = {
    "DJANGO_SETTINGS_MODULE": "calculator_web.settings",
    "DJANGO_SECRET_KEY": "test-secret-key-for-the-start-up-tests-only-0123456789abcdefghijkl",
    "TFSP_TF_SERVING_TARGETS": "127.0.0.1:8500,localhost:8500",
    "TFSP_TF_SERVING_REST_TARGETS": "127.0.0.1:8501",
}


def start(env: dict[str, str], *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TFSP_", "DJANGO_"))}
    return subprocess.run(
        command or (sys.executable, "-c", "import calculator_web.wsgi"),
        env={**base, **GOOD, **env},
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_good_settings_start():
    result = start({})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"TFSP_TF_SERVING_TARGETS": "10.0.0.1:8500,10.0.0.1:8500"},
            "TFSP_TF_SERVING_TARGETS: lists 10.0.0.1:8500 more than once",
        ),
        ({"TFSP_TF_SERVING_TARGETS": "tfs1"}, "TFSP_TF_SERVING_TARGETS: 'tfs1' is not host:port"),
        (
            {"TFSP_TF_SERVING_PROTOCOL": "rest", "TFSP_TF_SERVING_REST_TARGETS": "a:8501,b:8501,a:8501"},
            "TFSP_TF_SERVING_REST_TARGETS: lists a:8501 more than once",
        ),
        ({"TFSP_TF_SERVING_TIMEOUT_SECONDS": "0"}, "TFSP_TF_SERVING_TIMEOUT_SECONDS must be positive"),
        ({"TFSP_TF_SERVING_TIMEOUT_SECONDS": "-1"}, "TFSP_TF_SERVING_TIMEOUT_SECONDS must be positive"),
        (
            {"TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS": "soon"},
            "TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS must be a number of seconds",
        ),
        (
            {"TFSP_TF_SERVING_EJECT_AFTER_FAILURES": "0"},
            "TFSP_TF_SERVING_EJECT_AFTER_FAILURES must be a whole number of at least 1",
        ),
        (
            {
                "TFSP_TF_SERVING_TLS_CA_FILE": "/nonexistent/ca.crt",
                "TFSP_TF_SERVING_TLS_CERT_FILE": "/nonexistent/client.crt",
                "TFSP_TF_SERVING_TLS_KEY_FILE": "/nonexistent/client.key",
            },
            "TFSP_TF_SERVING_TLS_CA_FILE: cannot read /nonexistent/ca.crt: No such file or directory",
        ),
        (
            {"TFSP_TF_SERVING_TLS_CA_FILE": "/etc/ca.crt", "TFSP_TF_SERVING_TLS_KEY_FILE": "/etc/client.key"},
            "TFSP_TF_SERVING_TLS_CERT_FILE: must be set too",
        ),
        (
            {
                "TFSP_TF_SERVING_PROTOCOL": "rest",
                "TFSP_TF_SERVING_TLS_CA_FILE": "/etc/ca.crt",
                "TFSP_TF_SERVING_TLS_CERT_FILE": "/etc/client.crt",
                "TFSP_TF_SERVING_TLS_KEY_FILE": "/etc/client.key",
            },
            "TFSP_TF_SERVING_PROTOCOL: rest cannot be used with mutual TLS",
        ),
        (
            {"TFSP_TF_SERVING_TARGETS": "127.0.0.1:8500,tf-serving-misspelt.invalid:8500"},
            "TFSP_TF_SERVING_TARGETS: tf-serving-misspelt.invalid does not resolve",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_it(env, line):
    result = start(env)
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"calculator-web: configuration error: {line}")


def test_gunicorn_stops_with_the_line_instead_of_restarting_workers():
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = start(
        {"TFSP_TF_SERVING_TARGETS": "no-such-tf-serving.invalid:8500"},
        str(gunicorn),
        "--bind",
        f"127.0.0.1:{free_port()}",
        "--workers",
        "1",
        "calculator_web.wsgi:application",
    )
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = "calculator-web: configuration error: TFSP_TF_SERVING_TARGETS: no-such-tf-serving.invalid"
    assert line in result.stderr, result.stderr
    assert "App failed to load" in result.stderr, result.stderr
