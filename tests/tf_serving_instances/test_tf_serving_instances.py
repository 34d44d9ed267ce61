"""TF Serving's containers on a serving host: plugins/plugin_utils/tf_serving_instances.py and its filters.

The rule decides what the tf_serving role runs, what the web tier calls, what the firewall opens and
what monitoring scrapes; these tests pin it down without Ansible's templating.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.tfsp.serving.plugins.plugin_utils.nvidia_gpu import GpuFactError
from ansible_collections.tfsp.serving.plugins.plugin_utils.tf_serving_instances import (
    ONE_PER_GPU,
    ONE_PER_GPU_DEFAULT,
    InstanceError,
    host_instances,
    instances,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "tf_serving_instances_filters", REPO_ROOT / "plugins" / "filter" / "tf_serving_instances.py"
)
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)

STACK = {"grpc_port": 8500, "rest_port": 8501}


def gpu_facts(count: int) -> dict:
    return {"ansible_facts": {"ansible_local": {"nvidia_gpu": {"count": count, "pci_addresses": []}}}}


def test_off_is_one_container_on_the_stack_ports_whatever_the_gpus():
    for gpus in (0, 1, 4):
        assert instances(one_per_gpu=False, gpu_count=gpus, **STACK) == [
            {"index": 0, "name": "tf-serving", "grpc_port": 8500, "rest_port": 8501, "device": None}
        ]


def test_one_per_gpu_numbers_names_ports_and_devices():
    found = instances(one_per_gpu=True, gpu_count=3, **STACK)
    assert [(i["name"], i["grpc_port"], i["rest_port"], i["device"]) for i in found] == [
        ("tf-serving", 8500, 8501, "0"),
        ("tf-serving-1", 8502, 8503, "1"),
        ("tf-serving-2", 8504, 8505, "2"),
    ]
    assert [i["index"] for i in found] == [0, 1, 2]


def test_one_per_gpu_without_a_gpu_is_one_cpu_container():
    assert instances(one_per_gpu=True, gpu_count=0, **STACK) == [
        {"index": 0, "name": "tf-serving", "grpc_port": 8500, "rest_port": 8501, "device": None}
    ]


def test_values_as_ansible_hands_them_over():
    """Inventory values may arrive as text ("true", "2", "8500")."""
    found = instances(one_per_gpu="true", gpu_count="2", grpc_port="9500", rest_port="9600", name="serve")
    assert [(i["name"], i["grpc_port"], i["rest_port"]) for i in found] == [
        ("serve", 9500, 9600),
        ("serve-1", 9502, 9602),
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"one_per_gpu": True, "gpu_count": 2, "grpc_port": 8500, "rest_port": 8502}, "would share a port"),
        (
            {"one_per_gpu": True, "gpu_count": 3, "grpc_port": 65532, "rest_port": 65533},
            "between 1 and 65535",
        ),
        ({"one_per_gpu": True, "gpu_count": -1, **STACK}, "must not be negative"),
        ({"one_per_gpu": True, "gpu_count": True, **STACK}, "whole number"),
        ({"one_per_gpu": True, "gpu_count": "two", **STACK}, "whole number"),
        ({"one_per_gpu": "maybe", "gpu_count": 2, **STACK}, "true or false"),
        ({"one_per_gpu": False, "gpu_count": 0, "grpc_port": 8500, "rest_port": 8500}, "would share a port"),
    ],
)
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(InstanceError, match=message):
        instances(**settings)


def test_another_hosts_instances_follow_its_own_variables_and_fact():
    on = {"stack_tf_serving_one_per_gpu": True}
    # Its GPU fact decides the count when its inventory turns the setting on.
    assert len(host_instances({**gpu_facts(4), **on}, **STACK)) == 4
    # Off unless its own variables say so (the stack role's default): the caller's play is not looked at.
    assert len(host_instances(gpu_facts(4), **STACK)) == 1
    assert len(host_instances({**gpu_facts(4), "stack_tf_serving_one_per_gpu": "false"}, **STACK)) == 1
    # The count override (CPU hosts in tests, or fewer GPUs): no fact needed.
    cpu = host_instances({**on, "stack_tf_serving_gpu_count": 2}, **STACK)
    assert [i["rest_port"] for i in cpu] == [8501, 8503]
    assert [i["device"] for i in cpu] == ["0", "1"]
    # ansible_local at the top of hostvars (facts injected as variables) reads like in ansible_facts.
    assert len(host_instances({**on, "ansible_local": {"nvidia_gpu": {"count": 3}}}, **STACK)) == 3


def test_the_default_for_other_hosts_is_the_stack_roles():
    defaults = yaml.safe_load((REPO_ROOT / "roles/stack/defaults/main.yml").read_text())
    assert defaults[ONE_PER_GPU] is ONE_PER_GPU_DEFAULT is False


def test_another_host_without_facts_is_an_error_only_when_it_matters():
    on = {"stack_tf_serving_one_per_gpu": True}
    assert len(host_instances({}, **STACK)) == 1
    with pytest.raises(InstanceError, match="gather its facts"):
        host_instances(on, **STACK)
    # Facts gathered, no nvidia_gpu fact (nvidia_driver never ran): a CPU host, one container.
    assert len(host_instances({**on, "ansible_facts": {"ansible_local": {}}}, **STACK)) == 1
    with pytest.raises(GpuFactError):
        host_instances({**on, "ansible_facts": {"ansible_local": {"nvidia_gpu": "unreadable"}}}, **STACK)


def test_filter_adds_both_ports_and_reports_errors_as_ansibles():
    found = filters.tf_serving_instances(True, 2, 8500, 8501, "tf-serving")
    assert [i["ports"] for i in found] == [[8500, 8501], [8502, 8503]]
    assert filters.tf_serving_instances(False, 2, 8500, 8501) == [
        {
            "index": 0,
            "name": "tf-serving",
            "grpc_port": 8500,
            "rest_port": 8501,
            "device": None,
            "ports": [8500, 8501],
        }
    ]
    with pytest.raises(AnsibleFilterError, match=r"tf_serving_instances: .*would share a port"):
        filters.tf_serving_instances(True, 2, 8500, 8502)


def test_targets_of_a_group_every_instance_of_every_host():
    on = {"stack_tf_serving_one_per_gpu": True}
    hostvars = {
        "gpu4": {**gpu_facts(4), **on},
        "cpu2": {**on, "ansible_facts": {"ansible_local": {}}, "stack_tf_serving_gpu_count": 2},
        "off": gpu_facts(2),
    }
    hosts = ["gpu4", "cpu2", "off"]
    assert filters.tf_serving_targets(hosts, hostvars, 8500, 8501) == [
        "gpu4:8500", "gpu4:8502", "gpu4:8504", "gpu4:8506", "cpu2:8500", "cpu2:8502", "off:8500",
    ]  # fmt: skip
    assert filters.tf_serving_targets(hosts, hostvars, 8500, 8501, "rest") == [
        "gpu4:8501", "gpu4:8503", "gpu4:8505", "gpu4:8507", "cpu2:8501", "cpu2:8503", "off:8501",
    ]  # fmt: skip
    # Off (the default): each host once on the base port, exactly the targets before the setting existed.
    assert filters.tf_serving_targets(["gpu4", "cpu2"], {"gpu4": gpu_facts(4), "cpu2": {}}, 8500, 8501) == [
        "gpu4:8500",
        "cpu2:8500",
    ]
    with pytest.raises(AnsibleFilterError, match=r"tf_serving_targets: nofacts: .*gather its facts"):
        filters.tf_serving_targets(["nofacts"], {"nofacts": on}, 8500, 8501)
    with pytest.raises(AnsibleFilterError, match="grpc or rest"):
        filters.tf_serving_targets([], {}, 8500, 8501, "http")


def test_stale_containers_are_only_numbered_instances_not_run_now():
    containers = [
        {"Names": ["/tf-serving"]},
        {"Names": ["/tf-serving-1"]},
        {"Names": ["/tf-serving-3"]},
        {"Names": ["/tf-serving-10"]},
        {"Names": ["/tf-serving-canary"]},
        {"Names": ["/other-tf-serving-2"]},
        {"Names": None},
    ]
    now = filters.tf_serving_instances(True, 2, 8500, 8501)
    assert filters.tf_serving_stale_containers(containers, now, "tf-serving") == [
        "tf-serving-3",
        "tf-serving-10",
    ]
    one = filters.tf_serving_instances(False, 2, 8500, 8501)
    assert filters.tf_serving_stale_containers(containers, one, "tf-serving") == [
        "tf-serving-1",
        "tf-serving-3",
        "tf-serving-10",
    ]
    assert filters.tf_serving_stale_containers([], one, "tf-serving") == []
