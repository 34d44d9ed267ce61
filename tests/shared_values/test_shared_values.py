"""Values the roles share come from one place: the tfsp.serving.stack role's defaults.

The roles that share a value run in one play on localhost, their own tasks filtered out by a tag (a
role's argument validation is tagged `always`, so each role still checks what it resolved). A task
of the play then writes what each role resolved, and the lines the roles' templates render from it
(gunicorn's socket unit and environment file, nginx's site), to a file this test reads. A value set
once as a `stack_` variable in the inventory must reach every role; a role's own variable, as an
existing inventory sets it, must still win for that role only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from playbook_run import run_beside_roles

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_DEFAULTS = yaml.safe_load((REPO_ROOT / "roles/stack/defaults/main.yml").read_text())
TAG = "tfsp_shared_values"


PLAYBOOK = """\
- name: Resolve the shared values as the roles see them
  hosts: web1
  gather_facts: true
  gather_subset: [min]
  fact_path: {fact_path}
  vars:
    # Read by nginx's site template through a lookup relative to the role,
    # which a task outside the role cannot resolve; not a shared value.
    nginx_private_allowed_sources: [127.0.0.1]
    # The same for the firewall's client lists (its group_addresses.j2).
    firewall_tf_serving_clients: [192.0.2.21]
    firewall_monitoring_clients: [192.0.2.31]
  roles:
    - role: calculator_web
    - role: nginx
    - role: tf_serving
    - role: firewall
    - role: monitoring
    - role: container_runtime
  tasks:
    - name: Write what each role resolved and what its templates render
      ansible.builtin.copy:
        dest: {result}
        mode: "0600"
        content: "{{{{ resolved | to_json }}}}"
      vars:
        app: "{{{{ playbook_dir }}}}/roles/calculator_web/templates/"
        proxy: "{{{{ playbook_dir }}}}/roles/nginx/templates/"
        serve: "{{{{ playbook_dir }}}}/roles/tf_serving/templates/"
        firewall: "{{{{ playbook_dir }}}}/roles/firewall/templates/"
        resolved:
          calculator_web_socket_path: "{{{{ calculator_web_socket_path }}}}"
          nginx_upstream_servers: "{{{{ nginx_upstream_servers }}}}"
          calculator_web_static_root: "{{{{ calculator_web_static_root }}}}"
          nginx_static_root: "{{{{ nginx_static_root }}}}"
          tf_serving_grpc_port: "{{{{ tf_serving_grpc_port }}}}"
          tf_serving_rest_port: "{{{{ tf_serving_rest_port }}}}"
          calculator_web_tf_serving_targets: "{{{{ calculator_web_tf_serving_targets }}}}"
          calculator_web_tf_serving_rest_targets: "{{{{ calculator_web_tf_serving_rest_targets }}}}"
          firewall_tf_serving_ports: "{{{{ firewall_tf_serving_ports }}}}"
          firewall_tf_serving_monitoring_ports: "{{{{ firewall_tf_serving_monitoring_ports }}}}"
          monitoring_tf_serving_rest_port: "{{{{ monitoring_tf_serving_rest_port }}}}"
          tf_serving_gpu_present: "{{{{ tf_serving_gpu_present }}}}"
          tf_serving_image: "{{{{ tf_serving_image }}}}"
          container_runtime_gpu_present: "{{{{ container_runtime_gpu_present }}}}"
          monitoring_dcgm_gpu_present: "{{{{ monitoring_dcgm_gpu_present }}}}"
          firewall_exporter_ports: "{{{{ firewall_exporter_ports }}}}"
          monitoring_node_exporter_port: "{{{{ monitoring_node_exporter_port }}}}"
          monitoring_nginx_exporter_port: "{{{{ monitoring_nginx_exporter_port }}}}"
          monitoring_dcgm_exporter_port: "{{{{ monitoring_dcgm_exporter_port }}}}"
          monitoring_web_metrics_port: "{{{{ monitoring_web_metrics_port }}}}"
          nginx_metrics_port: "{{{{ nginx_metrics_port }}}}"
          nginx_stub_status_listen: "{{{{ nginx_stub_status_listen }}}}"
          monitoring_nginx_stub_status_url: "{{{{ monitoring_nginx_stub_status_url }}}}"
          tf_serving_monitoring_path: "{{{{ tf_serving_monitoring_path }}}}"
          monitoring_tf_serving_metrics_path: "{{{{ monitoring_tf_serving_metrics_path }}}}"
          tf_serving_model_base: "{{{{ tf_serving_model_base }}}}"
          monitoring_model_directory: "{{{{ monitoring_model_directory }}}}"
          serving_metrics: "{{{{ lookup('ansible.builtin.template', serve ~ 'monitoring.config.j2') }}}}"
          firewall_ruleset: "{{{{ lookup('ansible.builtin.template', firewall ~ 'nftables.conf.j2') }}}}"
          socket_unit: "{{{{ lookup('ansible.builtin.template', app ~ 'calculator-web.socket.j2') }}}}"
          app_environment: "{{{{ lookup('ansible.builtin.template', app ~ 'env.j2') }}}}"
          nginx_site: "{{{{ lookup('ansible.builtin.template', proxy ~ 'site.conf.j2') }}}}"
      tags: [{tag}]
"""


def resolve(tmp_path: Path, inventory: dict, gpus: int | None = None) -> dict:
    """Run the play against the inventory; what the roles resolved and rendered."""
    fact_path = tmp_path / "facts.d"
    fact_path.mkdir()
    if gpus is not None:
        fact = fact_path / "nvidia_gpu.fact"
        fact.write_text(f'#!/bin/sh\necho \'{{"count": {gpus}, "pci_addresses": []}}\'\n')
        fact.chmod(0o755)
    result = tmp_path / "resolved.json"
    playbook = PLAYBOOK.format(fact_path=fact_path, result=result, tag=TAG)
    run = run_beside_roles(tmp_path, playbook, inventory, "--tags", TAG)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(result.read_text())


def inventory(all_vars: dict | None = None, web1_vars: dict | None = None) -> dict:
    web1 = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_host": "127.0.0.1",
        **(web1_vars or {}),
    }
    return {
        "all": {
            "vars": all_vars or {},
            "children": {
                "web": {"hosts": {"web1": web1}},
                # Addresses (documentation range, never contacted) for the app's IPAddressAllow.
                "tf_serving": {
                    "hosts": {"tfs1": {"ansible_host": "192.0.2.11"}, "tfs2": {"ansible_host": "192.0.2.12"}}
                },
                "monitoring": {"hosts": {}},
            },
        }
    }


def lines(text: str, prefix: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


def check_web_paths(resolved: dict, socket_path: str, static_root: str) -> None:
    assert resolved["calculator_web_socket_path"] == socket_path
    assert resolved["nginx_upstream_servers"] == [f"unix:{socket_path}"]
    assert lines(resolved["socket_unit"], "ListenStream=") == [f"ListenStream={socket_path}"]
    assert lines(resolved["nginx_site"], "server unix:") == [
        f"server unix:{socket_path} max_fails=3 fail_timeout=10s;"
    ]
    assert resolved["calculator_web_static_root"] == static_root
    assert resolved["nginx_static_root"] == static_root
    assert lines(resolved["nginx_site"], "alias ") == [f"alias {static_root}/;"]
    assert lines(resolved["app_environment"], "DJANGO_STATIC_ROOT=") == [
        f'DJANGO_STATIC_ROOT="{static_root}"'
    ]


def check_ports(resolved: dict, grpc: int, rest: int) -> None:
    assert resolved["calculator_web_tf_serving_targets"] == [f"tfs1:{grpc}", f"tfs2:{grpc}"]
    assert resolved["calculator_web_tf_serving_rest_targets"] == [f"tfs1:{rest}", f"tfs2:{rest}"]
    assert lines(resolved["app_environment"], "TFSP_TF_SERVING_TARGETS=") == [
        f'TFSP_TF_SERVING_TARGETS="tfs1:{grpc},tfs2:{grpc}"'
    ]
    assert resolved["firewall_tf_serving_ports"] == [grpc, rest]
    assert resolved["firewall_tf_serving_monitoring_ports"] == [rest]
    assert resolved["monitoring_tf_serving_rest_port"] == rest


EXPORTER_PORTS = (
    "stack_node_exporter_port",
    "stack_nginx_exporter_port",
    "stack_web_metrics_port",
    "stack_dcgm_exporter_port",
)


def check_monitoring_values(resolved: dict, values: dict) -> None:
    """Exporter ports, nginx's listeners, TF Serving's metrics path and model base: each role's variable
    and what its template renders follow the stack_ values given."""
    node, nginx_exporter, web_metrics, dcgm = (values[name] for name in EXPORTER_PORTS)
    assert resolved["firewall_exporter_ports"] == [node, nginx_exporter, web_metrics, dcgm]
    ports = ", ".join(str(port) for port in (node, nginx_exporter, web_metrics, dcgm))
    assert lines(resolved["firewall_ruleset"], "ip saddr @monitoring_clients4 tcp dport") == [
        f"ip saddr @monitoring_clients4 tcp dport {{ {ports} }} accept"
    ]
    assert resolved["monitoring_node_exporter_port"] == node
    assert resolved["monitoring_nginx_exporter_port"] == nginx_exporter
    assert resolved["monitoring_dcgm_exporter_port"] == dcgm
    assert resolved["monitoring_web_metrics_port"] == web_metrics
    assert resolved["nginx_metrics_port"] == web_metrics
    assert f"listen {web_metrics};" in lines(resolved["nginx_site"], "listen ")
    stub_status = values["stack_nginx_stub_status_listen"]
    assert resolved["nginx_stub_status_listen"] == stub_status
    assert f"listen {stub_status};" in lines(resolved["nginx_site"], "listen ")
    assert resolved["monitoring_nginx_stub_status_url"] == f"http://{stub_status}/stub_status"
    metrics_path = values["stack_tf_serving_metrics_path"]
    assert resolved["tf_serving_monitoring_path"] == metrics_path
    assert resolved["monitoring_tf_serving_metrics_path"] == metrics_path
    assert lines(resolved["serving_metrics"], "path:") == [f'path: "{metrics_path}"']
    model_base = values["stack_tf_serving_model_base"]
    assert resolved["tf_serving_model_base"] == model_base
    assert resolved["monitoring_model_directory"] == model_base


MONITORING_VALUES = (
    *EXPORTER_PORTS,
    "stack_nginx_stub_status_listen",
    "stack_tf_serving_metrics_path",
    "stack_tf_serving_model_base",
)


def test_the_defaults_are_the_stack_roles(tmp_path):
    resolved = resolve(tmp_path, inventory())
    check_web_paths(
        resolved, STACK_DEFAULTS["stack_web_socket_path"], STACK_DEFAULTS["stack_web_static_root"]
    )
    grpc, rest = STACK_DEFAULTS["stack_tf_serving_grpc_port"], STACK_DEFAULTS["stack_tf_serving_rest_port"]
    assert (resolved["tf_serving_grpc_port"], resolved["tf_serving_rest_port"]) == (grpc, rest)
    check_ports(resolved, grpc, rest)
    check_monitoring_values(resolved, {name: STACK_DEFAULTS[name] for name in MONITORING_VALUES})
    # No nvidia_gpu fact on the host: every role takes it for a CPU host.
    assert resolved["tf_serving_gpu_present"] is False
    assert resolved["container_runtime_gpu_present"] is False
    assert resolved["monitoring_dcgm_gpu_present"] is False
    assert not resolved["tf_serving_image"].endswith("-gpu")


def test_one_setting_changes_every_role(tmp_path):
    changed = {
        "stack_web_socket_path": "/run/shared-test/app.sock",
        "stack_web_static_root": "/srv/shared-test/static",
        "stack_tf_serving_grpc_port": 9500,
        "stack_tf_serving_rest_port": 9501,
        "stack_node_exporter_port": 19100,
        "stack_nginx_exporter_port": 19113,
        "stack_web_metrics_port": 19180,
        "stack_dcgm_exporter_port": 19400,
        "stack_nginx_stub_status_listen": "127.0.0.1:18080",
        "stack_tf_serving_metrics_path": "/shared-test/metrics",
        "stack_tf_serving_model_base": "/srv/shared-test/models",
    }
    assert all(STACK_DEFAULTS[name] != value for name, value in changed.items())
    assert set(MONITORING_VALUES) <= set(changed)
    resolved = resolve(tmp_path, inventory(all_vars=changed))
    check_web_paths(resolved, "/run/shared-test/app.sock", "/srv/shared-test/static")
    assert (resolved["tf_serving_grpc_port"], resolved["tf_serving_rest_port"]) == (9500, 9501)
    check_ports(resolved, 9500, 9501)
    check_monitoring_values(resolved, changed)


def test_a_roles_own_variable_still_wins_for_that_role_only(tmp_path):
    """An inventory written before the stack role, setting the roles' own variables, keeps working."""
    own = {
        "tf_serving_grpc_port": 7500,
        "calculator_web_socket_path": "/run/own/app.sock",
        "nginx_metrics_port": 7180,
    }
    resolved = resolve(tmp_path, inventory(web1_vars=own))
    assert resolved["tf_serving_grpc_port"] == 7500
    assert resolved["calculator_web_socket_path"] == "/run/own/app.sock"
    assert lines(resolved["socket_unit"], "ListenStream=") == ["ListenStream=/run/own/app.sock"]
    # The other roles keep the shared value.
    assert resolved["nginx_upstream_servers"] == [f"unix:{STACK_DEFAULTS['stack_web_socket_path']}"]
    assert resolved["firewall_tf_serving_ports"][0] == STACK_DEFAULTS["stack_tf_serving_grpc_port"]
    assert resolved["nginx_metrics_port"] == 7180
    assert resolved["monitoring_web_metrics_port"] == STACK_DEFAULTS["stack_web_metrics_port"]
    assert STACK_DEFAULTS["stack_web_metrics_port"] in resolved["firewall_exporter_ports"]


@pytest.mark.parametrize(("gpus", "present"), [(2, True), (0, False)])
def test_every_role_reads_the_gpu_fact_alike(tmp_path, gpus, present):
    resolved = resolve(tmp_path, inventory(), gpus=gpus)
    assert resolved["tf_serving_gpu_present"] is present
    assert resolved["container_runtime_gpu_present"] is present
    assert resolved["monitoring_dcgm_gpu_present"] is present
    assert resolved["tf_serving_image"].endswith("-gpu") is present


def test_one_setting_overrides_gpu_detection_for_every_role(tmp_path):
    resolved = resolve(tmp_path, inventory(all_vars={"stack_gpu_present": True}), gpus=0)
    assert resolved["tf_serving_gpu_present"] is True
    assert resolved["container_runtime_gpu_present"] is True
    assert resolved["monitoring_dcgm_gpu_present"] is True
