"""calculator_web's gunicorn.conf.py for each worker model: valid Python with the settings asked for."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import jinja2
import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "roles/calculator_web/templates/gunicorn.conf.py.j2"
SETTINGS = {
    "ansible_managed": "managed",
    "calculator_web_gunicorn_workers": 5,
    "calculator_web_gunicorn_wake_one": False,
    "calculator_web_gunicorn_threads": 4,
    "calculator_web_gunicorn_keepalive": 75,
    "calculator_web_gunicorn_timeout": 30,
    "calculator_web_gunicorn_graceful_timeout": 30,
    "calculator_web_forwarded_allow_ips": ["127.0.0.1", "::1"],
}


def _rendered(**settings) -> dict:
    # Python source, not HTML: nothing to escape (as Ansible renders it).
    environment = jinja2.Environment(  # noqa: S701
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    environment.filters["to_json"] = json.dumps
    environment.filters["bool"] = bool
    text = environment.from_string(TEMPLATE.read_text()).render(**{**SETTINGS, **settings})
    found: dict = {}
    exec(compile(text, str(TEMPLATE), "exec"), found)  # noqa: S102 - our own template, rendered here
    return found


@pytest.mark.parametrize("access_log", [True, False])
def test_sync_workers_have_no_threads(access_log):
    config = _rendered(
        calculator_web_gunicorn_worker_class="sync", calculator_web_gunicorn_access_log=access_log
    )
    assert config["worker_class"] == "sync"
    assert config["workers"] == 5
    assert "threads" not in config
    assert config["accesslog"] == ("-" if access_log else None)


def test_gthread_workers_get_threads_and_outlast_nginx_keepalive():
    config = _rendered(
        calculator_web_gunicorn_worker_class="gthread", calculator_web_gunicorn_access_log=False
    )
    assert config["worker_class"] == "gthread"
    assert config["threads"] == 4
    # Above nginx's upstream keepalive_timeout (60 s by default): nginx closes an idle connection first.
    assert config["keepalive"] > 60
    assert config["forwarded_allow_ips"] == "127.0.0.1,::1"


@pytest.fixture
def app_with_its_worker(monkeypatch):
    """calculator_web.gunicorn_worker importable, as on a web host with the current app."""
    package = types.ModuleType("calculator_web")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "calculator_web", package)
    monkeypatch.setitem(sys.modules, "calculator_web.gunicorn_worker", types.ModuleType("gunicorn_worker"))


def _worker_class(worker_class: str, wake_one: bool) -> str:
    return _rendered(
        calculator_web_gunicorn_worker_class=worker_class,
        calculator_web_gunicorn_wake_one=wake_one,
        calculator_web_gunicorn_access_log=False,
    )["worker_class"]


def test_sync_workers_are_gunicorns_by_default_even_where_the_app_ships_its_own(app_with_its_worker):
    assert _worker_class("sync", wake_one=False) == "sync"


def test_wake_one_sync_workers_are_the_apps_own_where_it_ships_them(app_with_its_worker):
    # calculator_web_gunicorn_wake_one: the app's sync worker (calculator_web/gunicorn_worker.py).
    # An older app without it (the benchmark's A/B runs one) still gets gunicorn's own (below).
    assert _worker_class("sync", wake_one=True) == "calculator_web.gunicorn_worker.SyncWorker"


def test_wake_one_without_the_apps_worker_falls_back_to_gunicorns():
    assert _worker_class("sync", wake_one=True) == "sync"


def test_gthread_workers_are_gunicorns(app_with_its_worker):
    assert _worker_class("gthread", wake_one=True) == "gthread"
