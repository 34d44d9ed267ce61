"""One TF Serving per GPU as the roles render it from an inventory: every container called, opened, scraped.

An inventory with a serving host that runs two containers (one per GPU turned on for it, its GPU count
overridden, as on the CPU test hosts) and one that runs one. The roles run in one play on both a web
host and that serving host (local connections, their tasks filtered out by a tag, as in
tests/shared_values), and a task writes what each role resolved and what its templates render. No
Docker: the containers themselves are the tf_serving Molecule scenario's.

- the web tier's targets (and the app's environment file) name every container of every host;
- the serving host's firewall opens every container's gRPC and REST port to the web hosts' addresses
  only, and every REST port to the monitoring hosts, in the input and the forward (Docker) chains;
- Prometheus scrapes every container's REST port;
- the tf_serving role runs the same containers the stack role declares, and the playbooks drain them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from playbook_run import run_beside_roles

REPO_ROOT = Path(__file__).resolve().parents[2]
TAG = "tfsp_instances"

PLAYBOOK = """\
- name: Resolve and render what the roles make of the serving hosts' containers
  hosts: web1:tfs1
  gather_facts: true
  gather_subset: [min]
  fact_path: {fact_path}
  roles:
    - role: calculator_web
    - role: tf_serving
    - role: firewall
    - role: monitoring
  tasks:
    - name: Write what each role resolved and what its templates render
      ansible.builtin.copy:
        dest: "{result_dir}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
        content: "{{{{ resolved | to_json }}}}"
      vars:
        app: "{{{{ playbook_dir }}}}/roles/calculator_web/templates/"
        firewall: "{{{{ playbook_dir }}}}/roles/firewall/templates/"
        monitoring: "{{{{ playbook_dir }}}}/roles/monitoring/templates/"
        # The firewall's client lists come from its group_addresses.j2, which a lookup outside the
        # role finds only by its path: the same template, over the same groups.
        firewall_tf_serving_clients: >-
          {{{{ lookup('ansible.builtin.template', firewall ~ 'group_addresses.j2',
                      template_vars={{'address_group': 'web'}}) | split | list }}}}
        firewall_monitoring_clients: >-
          {{{{ lookup('ansible.builtin.template', firewall ~ 'group_addresses.j2',
                      template_vars={{'address_group': 'monitoring'}}) | split | list }}}}
        resolved:
          stack_tf_serving_instances: "{{{{ stack_tf_serving_instances }}}}"
          tf_serving_instances: "{{{{ tf_serving_instances }}}}"
          calculator_web_tf_serving_targets: "{{{{ calculator_web_tf_serving_targets }}}}"
          calculator_web_tf_serving_rest_targets: "{{{{ calculator_web_tf_serving_rest_targets }}}}"
          calculator_web_ip_address_allow: "{{{{ calculator_web_ip_address_allow }}}}"
          firewall_tf_serving_ports: "{{{{ firewall_tf_serving_ports }}}}"
          firewall_tf_serving_monitoring_ports: "{{{{ firewall_tf_serving_monitoring_ports }}}}"
          drained: "{{{{ stack_tf_serving_instances | map(attribute='name') | list }}}}"
          firewall_ruleset: "{{{{ lookup('ansible.builtin.template', firewall ~ 'nftables.conf.j2') }}}}"
          app_environment: "{{{{ lookup('ansible.builtin.template', app ~ 'env.j2') }}}}"
          prometheus: "{{{{ lookup('ansible.builtin.template', monitoring ~ 'prometheus.yml.j2') }}}}"
      tags: [{tag}]
"""

LOCAL = {"ansible_python_interpreter": sys.executable}
INVENTORY = {
    "all": {
        "children": {
            # Addresses of the documentation ranges, never contacted (every connection is local).
            "web": {
                "hosts": {
                    "web1": {**LOCAL, "ansible_host": "192.0.2.21"},
                    "web2": {"ansible_host": "192.0.2.22"},
                }
            },
            "tf_serving": {
                "hosts": {
                    # One container per GPU, two "GPUs" on a CPU host: two CPU containers.
                    "tfs1": {
                        **LOCAL,
                        "ansible_host": "192.0.2.11",
                        "stack_tf_serving_one_per_gpu": True,
                        "stack_tf_serving_gpu_count": 2,
                    },
                    # The setting off (the default): one container, as before.
                    "tfs2": {"ansible_host": "192.0.2.12"},
                }
            },
            "monitoring": {"hosts": {"mon1": {"ansible_host": "192.0.2.31"}}},
        }
    }
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    tmp_path = tmp_path_factory.mktemp("instances")
    fact_path = tmp_path / "facts.d"
    fact_path.mkdir()
    playbook = PLAYBOOK.format(fact_path=fact_path, result_dir=tmp_path, tag=TAG)
    run = run_beside_roles(tmp_path, playbook, INVENTORY, "--tags", TAG)
    assert run.returncode == 0, run.stdout + run.stderr
    return {host: json.loads((tmp_path / f"{host}.json").read_text()) for host in ("web1", "tfs1")}


def lines(text: str, prefix: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


def test_the_serving_host_runs_two_containers_as_the_stack_declares(rendered):
    serving = rendered["tfs1"]
    assert [(i["name"], i["grpc_port"], i["rest_port"]) for i in serving["stack_tf_serving_instances"]] == [
        ("tf-serving", 8500, 8501),
        ("tf-serving-1", 8502, 8503),
    ]
    # The tf_serving role runs exactly these, and gpu_hosts.yml drains exactly these before a reboot.
    assert serving["tf_serving_instances"] == serving["stack_tf_serving_instances"]
    assert serving["drained"] == ["tf-serving", "tf-serving-1"]


def test_the_web_tier_calls_every_container_of_every_serving_host(rendered):
    web = rendered["web1"]
    assert web["calculator_web_tf_serving_targets"] == ["tfs1:8500", "tfs1:8502", "tfs2:8500"]
    assert web["calculator_web_tf_serving_rest_targets"] == ["tfs1:8501", "tfs1:8503", "tfs2:8501"]
    assert lines(web["app_environment"], "TFSP_TF_SERVING_TARGETS=") == [
        'TFSP_TF_SERVING_TARGETS="tfs1:8500,tfs1:8502,tfs2:8500"'
    ]
    # The app's sandbox lets it reach both serving hosts (by address; the ports are the firewall's).
    assert {"192.0.2.11", "192.0.2.12"} <= set(web["calculator_web_ip_address_allow"])


def test_the_firewall_admits_every_containers_ports_from_the_web_hosts_only(rendered):
    serving = rendered["tfs1"]
    assert serving["firewall_tf_serving_ports"] == [8500, 8501, 8502, 8503]
    assert serving["firewall_tf_serving_monitoring_ports"] == [8501, 8503]
    ruleset = serving["firewall_ruleset"]
    # The set the ports are opened to: the web hosts' addresses, nothing else (not the monitoring host).
    clients = ruleset.split("set tf_serving_clients4 {", 1)[1].split("}", 2)
    assert lines(clients[0] + "}", "elements =") == ["elements = { 192.0.2.21, 192.0.2.22 }"]
    assert lines(ruleset, "ip saddr @tf_serving_clients4 tcp dport") == [
        "ip saddr @tf_serving_clients4 tcp dport { 8500, 8501, 8502, 8503 } accept"
    ]
    assert lines(ruleset, "ip saddr @monitoring_clients4 tcp dport { 8501") == [
        "ip saddr @monitoring_clients4 tcp dport { 8501, 8503 } accept"
    ]
    # Docker's published path (DNAT): every port accepted from the web hosts, then dropped for anyone else.
    dnat = "meta l4proto tcp ct status dnat ct original proto-dst { 8500, 8501, 8502, 8503 }"
    assert lines(ruleset, dnat) == [
        f"{dnat} ip saddr @tf_serving_clients4 accept",
        f"{dnat} ip6 saddr @tf_serving_clients6 accept",
        f"{dnat} drop",
    ]


def test_prometheus_scrapes_every_container(rendered):
    prometheus = yaml.safe_load(rendered["web1"]["prometheus"])
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    scraped = [(c["labels"], c["targets"]) for c in jobs["tf_serving"]["static_configs"]]
    assert scraped == [
        ({"instance": "tfs1", "tf_serving_instance": "tf-serving"}, ["192.0.2.11:8501"]),
        ({"instance": "tfs1", "tf_serving_instance": "tf-serving-1"}, ["192.0.2.11:8503"]),
        ({"instance": "tfs2"}, ["192.0.2.12:8501"]),
    ]
