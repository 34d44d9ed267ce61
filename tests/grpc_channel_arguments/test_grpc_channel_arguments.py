"""plugins/filter/grpc_channel_arguments.py: the tf_serving role's --grpc_channel_arguments value."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/grpc_channel_arguments.py"
_spec = importlib.util.spec_from_file_location("grpc_channel_arguments", PLUGIN)
gca = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gca)


def test_mapping_becomes_the_flag_value_in_order():
    value = gca.grpc_channel_arguments(
        {"grpc.keepalive_permit_without_calls": True, "grpc.http2.min_ping_interval_without_data_ms": 4000}
    )
    assert value == "grpc.keepalive_permit_without_calls=1,grpc.http2.min_ping_interval_without_data_ms=4000"


@pytest.mark.parametrize("empty", [None, {}])
def test_nothing_gives_no_flag(empty):
    assert gca.grpc_channel_arguments(empty) == ""


@pytest.mark.parametrize(
    "arguments",
    [
        ["grpc.max_connection_age_ms=1000"],  # not a mapping
        {"grpc.a,grpc.b": 1},  # TF Serving would split it into two entries
        {"Grpc.A": 1},
        {"grpc.primary_user_agent": "a=b"},  # TF Serving keeps only "a"
        {"grpc.primary_user_agent": "x,y"},
        {"grpc.primary_user_agent": ""},
        {"grpc.max_connection_age_ms": 1.5},
        {"grpc.max_connection_age_ms": None},
    ],
)
def test_what_tf_serving_would_misread_is_refused(arguments):
    with pytest.raises(AnsibleFilterError, match="grpc_channel_arguments"):
        gca.grpc_channel_arguments(arguments)


def test_the_role_default_welcomes_the_web_tiers_keepalive_pings():
    """The tf_serving role's ping policy against the interval the web tier's client pings at."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    defaults = yaml.safe_load((root / "roles/tf_serving/defaults/main.yml").read_text())
    server = defaults["tf_serving_grpc_channel_arguments"]
    client = (root / "django_app/tfsp_client/grpc_transport.py").read_text()
    ping_every_ms = int(re.search(r'\("grpc\.keepalive_time_ms", (\d+)\)', client)[1])
    assert server["grpc.keepalive_permit_without_calls"] == 1  # the client pings idle connections too
    assert server["grpc.http2.min_ping_interval_without_data_ms"] < ping_every_ms
