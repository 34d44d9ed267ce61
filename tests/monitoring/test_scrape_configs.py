"""Scrape jobs generated from the inventory by the monitoring role's filter plugin."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "monitoring.py"
spec = importlib.util.spec_from_file_location("monitoring_filters", PLUGIN)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)

SETTINGS = {
    "node_group": "all",
    "web_group": "web",
    "tf_serving_group": "tf_serving",
    "node_exporter_port": 9100,
    "nginx_exporter_port": 9113,
    "web_metrics_port": 9180,
    "dcgm_exporter_port": 9400,
    "tf_serving_rest_port": 8501,
    "tf_serving_metrics_path": "/monitoring/prometheus/metrics",
    "blackbox_address": "127.0.0.1:9115",
    "probe_interval": "30s",
    "site_urls": ["https://calc.example/"],
    "self_targets": {"prometheus": "127.0.0.1:9090"},
}
GROUPS = {"all": ["gpu1", "gpu2", "web1", "mon1"], "tf_serving": ["gpu1", "gpu2"], "web": ["web1"]}
HOSTVARS = {
    "gpu1": {
        "ansible_host": "10.0.0.1",
        "tf_serving_models": [{"name": "calculator"}],
        "ansible_facts": {"ansible_local": {"nvidia_gpu": {"count": 2}}},
    },
    # A name as ansible_host: the address comes from its facts; its REST port is its own.
    "gpu2": {
        "ansible_host": "gpu2.internal",
        "tf_serving_rest_port": 9501,
        "tf_serving_models": [{"name": "calculator"}],
        "ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}},
    },
    "web1": {"ansible_facts": {"default_ipv4": {"address": "10.0.1.1"}}},
    "mon1": {"monitoring_address": "fd00::5"},
}


def jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in filters.monitoring_scrape_configs(GROUPS, HOSTVARS, SETTINGS)}


def targets(job: dict) -> dict[str, str]:
    return {config["labels"]["instance"]: config["targets"][0] for config in job["static_configs"]}


def test_node_exporter_on_every_host_by_address():
    assert targets(jobs()["node"]) == {
        "gpu1": "10.0.0.1:9100",
        "gpu2": "10.0.0.2:9100",
        "web1": "10.0.1.1:9100",
        "mon1": "[fd00::5]:9100",
    }


def test_tf_serving_metrics_on_each_hosts_rest_port():
    job = jobs()["tf_serving"]
    assert job["metrics_path"] == "/monitoring/prometheus/metrics"
    assert targets(job) == {"gpu1": "10.0.0.1:8501", "gpu2": "10.0.0.2:9501"}


def test_web_jobs():
    assert targets(jobs()["nginx"]) == {"web1": "10.0.1.1:9113"}
    assert targets(jobs()["web_app"]) == {"web1": "10.0.1.1:9180"}


def test_dcgm_only_where_a_gpu_is_counted():
    assert targets(jobs()["dcgm"]) == {"gpu1": "10.0.0.1:9400"}


def test_model_readiness_probed_through_the_blackbox_exporter():
    job = jobs()["tf_serving_model"]
    assert job["params"] == {"module": ["tf_serving_model_available"]}
    assert targets(job) == {
        "gpu1": "http://10.0.0.1:8501/v1/models/calculator",
        "gpu2": "http://10.0.0.2:9501/v1/models/calculator",
    }
    assert {"target_label": "__address__", "replacement": "127.0.0.1:9115"} in job["relabel_configs"]


def test_site_probe():
    assert targets(jobs()["site"]) == {"https://calc.example/": "https://calc.example/"}


def test_no_web_or_serving_jobs_without_those_groups():
    names = {
        job["job_name"] for job in filters.monitoring_scrape_configs({"all": ["mon1"]}, HOSTVARS, SETTINGS)
    }
    assert names == {"prometheus", "node", "site"}


def test_host_without_address_named_in_the_error():
    with pytest.raises(Exception, match="no address known for lost"):
        filters.monitoring_scrape_configs(
            {"all": ["lost"]}, {"lost": {"ansible_host": "lost.internal"}}, SETTINGS
        )


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/srv/tf-serving/models", "/srv"), ("/srvx/models", "/"), ("/srv", "/srv"), ("/var/lib", "/")],
)
def test_mountpoint_of_a_directory(path, expected):
    mounts = [{"mount": "/"}, {"mount": "/srv"}, {"mount": "/srv/other"}]
    assert filters.monitoring_mountpoint(path, mounts) == expected


def test_one_tf_serving_per_gpu_scrapes_and_probes_every_container():
    """With one container per GPU, each container's REST port is scraped and probed, its series told
    apart by a tf_serving_instance label (Prometheus would merge two targets with the same labels)."""
    settings = {**SETTINGS, "tf_serving_grpc_port": 8500}
    on = {"stack_tf_serving_one_per_gpu": True}
    hostvars = {
        **HOSTVARS,
        "gpu1": {**HOSTVARS["gpu1"], **on},
        # No GPU, the count overridden in the inventory (as the tests run it): two CPU containers.
        "gpu2": {
            **HOSTVARS["gpu2"],
            "ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}, "ansible_local": {}},
            "stack_tf_serving_gpu_count": 2,
            **on,
        },
    }
    found = {job["job_name"]: job for job in filters.monitoring_scrape_configs(GROUPS, hostvars, settings)}
    scraped = [(c["labels"], c["targets"][0]) for c in found["tf_serving"]["static_configs"]]
    assert scraped == [
        ({"instance": "gpu1", "tf_serving_instance": "tf-serving"}, "10.0.0.1:8501"),
        ({"instance": "gpu1", "tf_serving_instance": "tf-serving-1"}, "10.0.0.1:8503"),
        ({"instance": "gpu2", "tf_serving_instance": "tf-serving"}, "10.0.0.2:9501"),
        ({"instance": "gpu2", "tf_serving_instance": "tf-serving-1"}, "10.0.0.2:9503"),
    ]
    probed = [c["targets"][0] for c in found["tf_serving_model"]["static_configs"]]
    assert probed == [
        "http://10.0.0.1:8501/v1/models/calculator",
        "http://10.0.0.1:8503/v1/models/calculator",
        "http://10.0.0.2:9501/v1/models/calculator",
        "http://10.0.0.2:9503/v1/models/calculator",
    ]


def test_off_scrapes_each_serving_host_once_without_an_instance_label():
    scraped = [c["labels"] for c in jobs()["tf_serving"]["static_configs"]]
    assert scraped == [{"instance": "gpu1"}, {"instance": "gpu2"}]
