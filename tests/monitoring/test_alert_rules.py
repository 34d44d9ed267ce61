"""The monitoring role's alert rules, rendered with its default thresholds and unit-tested with promtool.

promtool comes with Debian's `prometheus` package (requirements/apt-test.txt, `make test-deps`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "monitoring"
HERE = Path(__file__).resolve().parent


def render_rules() -> str:
    """The rules as the role renders them: [[ ]] delimiters, the role's default thresholds."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    # YAML, not HTML: nothing to escape (Ansible's template module does not either).
    env = jinja2.Environment(  # noqa: S701
        variable_start_string="[[",
        variable_end_string="]]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    template = env.from_string((ROLE / "templates" / "alerts.rules.yml.j2").read_text())
    return template.render(**defaults)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("rules")
    (directory / "alerts.rules.yml").write_text(render_rules())
    return directory


def rules(directory: Path) -> list[dict]:
    loaded = yaml.safe_load((directory / "alerts.rules.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("promtool"), "promtool missing: run `make test-deps` (Debian package prometheus)"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def test_rules_are_valid(rules_dir):
    result = promtool("check", "rules", str(rules_dir / "alerts.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_and_severity(rules_dir):
    for rule in rules(rules_dir):
        assert rule["annotations"]["runbook"].strip(), rule["alert"]
        assert "{{" not in rule["annotations"]["runbook"], f"{rule['alert']}: runbooks are plain text"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]


def test_every_alert_is_unit_tested(rules_dir):
    cases = yaml.safe_load((HERE / "alerts_test.yml").read_text())
    tested = {
        case["alertname"] for test in cases["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in rules(rules_dir)} == tested


def test_alerts_fire_as_specified(rules_dir):
    """promtool runs alerts_test.yml; each expected alert also expects its rule's runbook line."""
    runbooks = {rule["alert"]: rule["annotations"]["runbook"] for rule in rules(rules_dir)}
    cases = yaml.safe_load((HERE / "alerts_test.yml").read_text())
    for test in cases["tests"]:
        for case in test["alert_rule_test"]:
            for alert in case["exp_alerts"]:
                alert["exp_annotations"]["runbook"] = runbooks[case["alertname"]]
    (rules_dir / "alerts_test.yml").write_text(yaml.safe_dump(cases, sort_keys=False))
    result = promtool("test", "rules", str(rules_dir / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expectation_fails(rules_dir):
    """Control: promtool does fail a test whose expected alert does not fire."""
    broken = {
        "rule_files": ["alerts.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": 'up{job="tf_serving", instance="tfs1"}', "values": "1x10"}],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "TFServingDown",
                        "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "tfs1"}}],
                    }
                ],
            }
        ],
    }
    (rules_dir / "broken_test.yml").write_text(yaml.safe_dump(broken))
    assert promtool("test", "rules", str(rules_dir / "broken_test.yml")).returncode != 0


def test_dcgm_exports_every_field_the_rules_use(rules_dir):
    """The counters the DCGM exporter is given include each DCGM_FI_* field the rules read."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    exported = {field for field, _kind, _help in defaults["monitoring_dcgm_counters"]}
    used = {
        word
        for rule in rules(rules_dir)
        for word in rule["expr"].replace("(", " ").replace(")", " ").split()
        if word.startswith("DCGM_FI_")
    }
    assert used == {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}
    assert used <= exported
