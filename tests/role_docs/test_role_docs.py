"""tools/role_docs.py: README variable sections generated from the spec, and the spec/defaults check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import role_docs

SPEC = """\
argument_specs:
  main:
    short_description: A test role
    options:
      demo_port:
        type: int
        default: 8080
        description: Port C(demo) listens on.
      demo_enabled:
        type: bool
        default: true
        description: [Whether it runs., Set I(false) to stop it.]
      demo_filter:
        type: str
        default: "{{ groups['all'] | first }}"
        description: A Jinja default with a pipe.
      demo_mode:
        type: str
        default: fast
        choices: [fast, safe]
        description: Mode.
      demo_branch:
        type: str
        default: "570"
        description: A string that looks like a number.
      demo_items:
        type: list
        elements: dict
        default: []
        description: Items.
        options:
          name:
            type: str
            required: true
            description: Item name.
"""
DEFAULTS = """\
demo_port: 8080
demo_enabled: true
demo_filter: "{{ groups['all'] | first }}"
demo_mode: fast
demo_branch: "570"
demo_items: []
"""
README = "# demo\n\nProse before.\n\n## Role Variables\n\n{section}\n\nProse after.\n"


def make_role(tmp_path: Path, spec: str = SPEC, defaults: str = DEFAULTS, section: str | None = None) -> Path:
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(spec)
    (role / "defaults" / "main.yml").write_text(defaults)
    marked = f"{role_docs.BEGIN}\n{role_docs.END}" if section is None else section
    (role / "README.md").write_text(README.format(section=marked))
    return role


def check(role: Path, capsys) -> tuple[int, str]:
    code = role_docs.main(["--check", str(role)])
    return code, capsys.readouterr().err


def test_render_is_a_table_from_the_spec() -> None:
    specs = role_docs.yaml.safe_load(SPEC)["argument_specs"]
    text = role_docs.render(specs)
    assert text.startswith(role_docs.BEGIN)
    assert text.endswith(role_docs.END)
    assert "| `demo_port` | int | `8080` | Port `demo` listens on. |" in text
    assert "| `demo_enabled` | bool | `true` | Whether it runs. Set *false* to stop it. |" in text
    # A pipe inside a cell is escaped, even in a code span, or it would split the row.
    assert "`{{ groups['all'] \\| first }}`" in text
    assert "Mode. Choices: `fast`, `safe`." in text
    assert '| `demo_branch` | str | `"570"` |' in text
    assert "| `demo_items[].name` | str | required | Item name. |" in text
    assert "Entry point" not in text  # one entry point: no per-entry-point heading


def test_several_entry_points_each_get_a_table() -> None:
    specs = {
        "main": {"short_description": "Main", "options": {"a": {"type": "str", "default": "x"}}},
        "extra": {"short_description": "Extra", "options": {"b": {"type": "int", "default": 1}}},
    }
    text = role_docs.render(specs)
    assert "Entry point `main`: Main." in text
    assert "Entry point `extra`: Extra." in text
    assert text.count("| Variable | Type | Default | Description |") == 2


def test_write_fills_the_section_and_keeps_the_prose(tmp_path, capsys) -> None:
    role = make_role(tmp_path)
    assert role_docs.main(["--write", str(role)]) == 0
    text = (role / "README.md").read_text()
    assert text.startswith("# demo\n\nProse before.\n\n## Role Variables\n\n")
    assert text.endswith("\n\nProse after.\n")
    assert "| `demo_port` |" in text
    assert check(role, capsys) == (0, "")
    # Idempotent: a second write changes nothing.
    role_docs.main(["--write", str(role)])
    assert (role / "README.md").read_text() == text


def test_check_fails_on_an_edited_section(tmp_path, capsys) -> None:
    role = make_role(tmp_path)
    role_docs.main(["--write", str(role)])
    readme = role / "README.md"
    readme.write_text(readme.read_text().replace("Port `demo` listens on.", "Port."))
    code, err = check(role, capsys)
    assert code == 1
    assert f"{readme}: the variables section differs from the spec" in err
    assert "-| `demo_port` | int | `8080` | Port. |" in err


def test_check_fails_without_markers(tmp_path, capsys) -> None:
    role = make_role(tmp_path, section="| `demo_port` | `8080` | hand-written |")
    code, err = check(role, capsys)
    assert code == 1
    assert "no generated section" in err


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        (
            DEFAULTS + "demo_stray: 1\n",
            "defaults/main.yml sets demo_stray, which meta/argument_specs.yml does not declare",
        ),
        (
            DEFAULTS.replace("demo_port: 8080", "demo_port: 9090"),
            "demo_port: meta/argument_specs.yml (main) default 8080",
        ),
        (
            DEFAULTS.replace("demo_port: 8080\n", ""),
            "gives demo_port the default 8080; defaults/main.yml does not set it",
        ),
        (
            DEFAULTS.replace("demo_enabled: true", "demo_enabled: 1"),
            "demo_enabled: meta/argument_specs.yml (main) default True",
        ),
        (
            DEFAULTS.replace('demo_branch: "570"', "demo_branch: 570"),
            "demo_branch: meta/argument_specs.yml (main) default '570'",
        ),
    ],
    ids=["undeclared", "different-value", "missing-in-defaults", "bool-is-not-int", "str-is-not-int"],
)
def test_check_fails_when_defaults_and_spec_disagree(tmp_path, capsys, defaults, message) -> None:
    role = make_role(tmp_path, defaults=defaults)
    role_docs.main(["--write", str(role)])
    code, err = check(role, capsys)
    assert code == 1
    assert message in err


def test_a_default_set_only_in_defaults_is_a_disagreement(tmp_path, capsys) -> None:
    spec = SPEC.replace("        default: 8080\n", "")
    role = make_role(tmp_path, spec=spec)
    role_docs.main(["--write", str(role)])
    code, err = check(role, capsys)
    assert code == 1
    assert "defaults/main.yml sets demo_port = 8080; meta/argument_specs.yml (main) gives no default" in err


def test_same_compares_as_ansible_uses_values() -> None:
    assert role_docs.same(0, 0.0)
    assert not role_docs.same(True, 1)
    assert not role_docs.same("1", 1)
    assert role_docs.same({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not role_docs.same({"a": [1]}, {"a": [1, 2]})


def test_the_repository_roles_agree() -> None:
    """Every role's README section, defaults and spec agree (also run by make lint)."""
    roles = role_docs.roles_in(role_docs.REPO_ROOT)
    assert len(roles) >= 8
    assert role_docs.main(["--check", *map(str, roles)]) == 0
