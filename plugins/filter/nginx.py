"""Filters of the nginx role: which of its limit, timeout and proxy settings are malformed.

These settings land in nginx's configuration as text, where a bad one would only show at the
``nginx -t`` check after other files changed; the role checks them first and names the bad ones.
Unit-tested in tests/nginx/.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Setting name prefix or name -> what a valid value looks like.
_RATE = re.compile(r"[1-9][0-9]*r/[sm]")
_TIMEOUT = re.compile(r"[0-9]+(ms|s|m|h)?")
_LOCATION = re.compile(r"/[^\s;{}'\"]*")
_ADDRESS = re.compile(r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?")
_HEADER = re.compile(r"[A-Za-z0-9_-]+")
# The message goes into a single-quoted nginx string and a JSON string: no quotes, $ or backslash.
_MESSAGE = re.compile(r"[A-Za-z0-9 .,:;!?()-]+")


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _count(value: Any, least: int) -> bool:
    """A whole number of at least ``least``; as text too (``-e name=5`` passes a string)."""
    if isinstance(value, bool):
        return False
    try:
        return int(str(value)) >= least
    except ValueError:
        return False


def _valid(name: str, value: Any) -> bool:
    if name.endswith("_rate_limit"):
        return _matches(_RATE, value)
    if name.endswith("_timeout"):
        return _matches(_TIMEOUT, value)
    if name.endswith("_rate_burst"):
        return _count(value, 0)
    if name == "nginx_connections_per_client":
        return _count(value, 1)
    if name == "nginx_status_locations":
        return isinstance(value, list) and all(_matches(_LOCATION, item) for item in value)
    if name == "nginx_real_ip_from":
        return isinstance(value, list) and all(_matches(_ADDRESS, item) for item in value)
    if name == "nginx_real_ip_header":
        return _matches(_HEADER, value)
    if name == "nginx_rate_limited_message":
        return _matches(_MESSAGE, value)
    raise ValueError(f"nginx_invalid_settings has no rule for {name}")


def nginx_invalid_settings(settings: Mapping[str, Any]) -> list[str]:
    """The names of ``settings`` (setting name -> value) whose value nginx would not take, in order."""
    return [name for name, value in settings.items() if not _valid(name, value)]


class FilterModule:
    """nginx filters."""

    def filters(self):
        return {"nginx_invalid_settings": nginx_invalid_settings}
