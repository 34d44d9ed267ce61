"""The nginx role's check of its limit, timeout and proxy settings (plugins/filter/nginx.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("nginx_filters", ROOT / "plugins" / "filter" / "nginx.py")
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)
invalid = filters.nginx_invalid_settings

CHECKED = [
    "nginx_api_rate_limit",
    "nginx_page_rate_limit",
    "nginx_status_rate_limit",
    "nginx_api_rate_burst",
    "nginx_page_rate_burst",
    "nginx_status_rate_burst",
    "nginx_connections_per_client",
    "nginx_client_header_timeout",
    "nginx_client_body_timeout",
    "nginx_send_timeout",
    "nginx_keepalive_timeout",
    "nginx_status_locations",
    "nginx_real_ip_from",
    "nginx_real_ip_header",
    "nginx_rate_limited_message",
]


@pytest.fixture
def defaults() -> dict:
    values = yaml.safe_load((ROOT / "roles" / "nginx" / "defaults" / "main.yml").read_text())
    return {name: values[name] for name in CHECKED}


def test_the_roles_defaults_pass(defaults):
    assert invalid(defaults) == []


def test_settings_that_pass(defaults):
    good = {
        "nginx_page_rate_limit": "30r/m",
        "nginx_page_rate_burst": 0,
        "nginx_api_rate_burst": "5",
        "nginx_send_timeout": "500ms",
        "nginx_keepalive_timeout": "75",
        "nginx_real_ip_from": ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"],
        "nginx_real_ip_header": "proxy_protocol",
    }
    assert invalid(defaults | good) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("nginx_api_rate_limit", "10/s"),
        ("nginx_page_rate_limit", "0r/s"),
        ("nginx_status_rate_limit", "1r/h"),
        ("nginx_api_rate_burst", -1),
        ("nginx_status_rate_burst", True),
        ("nginx_connections_per_client", 0),
        ("nginx_connections_per_client", "many"),
        ("nginx_client_header_timeout", "10 s"),
        ("nginx_send_timeout", "10d"),
        ("nginx_status_locations", ["status"]),
        ("nginx_status_locations", ["/status; return 200"]),
        ("nginx_real_ip_from", ["lb.example"]),
        ("nginx_real_ip_header", "X Forwarded For"),
        ("nginx_rate_limited_message", "it's $busy"),
        ("nginx_rate_limited_message", 'say "no"'),
    ],
)
def test_a_bad_setting_is_named(defaults, name, value):
    assert invalid(defaults | {name: value}) == [name]


def test_every_bad_setting_is_named_in_order(defaults):
    bad = defaults | {"nginx_send_timeout": "x", "nginx_api_rate_limit": "x"}
    assert invalid(bad) == ["nginx_api_rate_limit", "nginx_send_timeout"]


def test_a_setting_without_a_rule_is_a_programming_error():
    with pytest.raises(ValueError, match="no rule for nginx_other"):
        invalid({"nginx_other": 1})
