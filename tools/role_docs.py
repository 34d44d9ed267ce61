#!/usr/bin/env python3
"""Role READMEs' variable sections, generated from each role's meta/argument_specs.yml.

The spec is where a role's variables are declared. This script writes the README's section
between the BEGIN and END markers from it (``--write``), or checks (``--check``, in ``make lint``)
that every README section is what the spec generates and that ``defaults/main.yml`` agrees with
the spec: every variable set there is declared, and every default is the same on both sides.
Prose outside the markers is the README's own and never touched.

    tools/role_docs.py --check [ROLE_DIR ...]   exit 1 naming each difference
    tools/role_docs.py --write [ROLE_DIR ...]   rewrite the generated sections
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BEGIN = (
    "<!-- BEGIN role variables: generated from meta/argument_specs.yml by tools/role_docs.py"
    " --write; edit the spec, not this section -->"
)
END = "<!-- END role variables -->"
INTRO = (
    "Declared in `meta/argument_specs.yml` (the role checks its arguments against it); the defaults"
    " are in `defaults/main.yml`, and `make lint` fails when the two or this table disagree."
)
# Ansible's documentation markup, as ansible-doc reads it in descriptions.
MARKUP = [
    (re.compile(r"[CVOM]\(([^)]+)\)"), r"`\1`"),
    (re.compile(r"I\(([^)]+)\)"), r"*\1*"),
    (re.compile(r"B\(([^)]+)\)"), r"**\1**"),
    (re.compile(r"U\(([^)]+)\)"), r"\1"),
    (re.compile(r"L\(([^,)]+),\s*([^)]+)\)"), r"[\1](\2)"),
]
NO_DEFAULT = object()
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


class RoleDocsError(Exception):
    """A role whose README cannot be generated (no markers, no spec)."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def specs_of(role: Path) -> dict[str, Any]:
    data = load_yaml(role / "meta" / "argument_specs.yml") or {}
    specs = data.get("argument_specs")
    if not isinstance(specs, dict) or not specs:
        raise RoleDocsError(f"{role.name}: meta/argument_specs.yml has no argument_specs")
    return specs


def _markup(text: str) -> str:
    for pattern, replacement in MARKUP:
        text = pattern.sub(replacement, text)
    return text


def _cell(text: str) -> str:
    """Table-safe: one line, pipes escaped (also inside code spans, as GitHub's tables need)."""
    return " ".join(text.split()).replace("|", "\\|")


def _description(option: Mapping[str, Any]) -> str:
    description = option.get("description", "")
    if isinstance(description, list):
        description = " ".join(str(line) for line in description)
    text = _markup(str(description))
    if option.get("choices"):
        text += " Choices: " + ", ".join(f"`{choice}`" for choice in option["choices"]) + "."
    return text


def _value(value: Any) -> str:
    # A string shows bare unless YAML would read it bare as something else ("570", "true", "").
    if (
        isinstance(value, str)
        and value
        and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG
    ):
        return f"`{value}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _default(option: Mapping[str, Any]) -> str:
    if "default" in option:
        return _value(option["default"])
    return "required" if option.get("required") else ""


def _type(option: Mapping[str, Any]) -> str:
    kind = str(option.get("type", "str"))
    return f"{kind} of {option['elements']}" if option.get("elements") else kind


def _rows(options: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for name, option in options.items():
        option = option or {}
        label = f"{prefix}{name}"
        cells = [f"`{label}`", _type(option), _default(option), _description(option)]
        yield "| " + " | ".join(_cell(cell) for cell in cells) + " |"
        if option.get("options"):
            nested = f"{label}[]." if option.get("type") == "list" else f"{label}."
            yield from _rows(option["options"], nested)


def render(specs: Mapping[str, Any]) -> str:
    """The generated section, markers included."""
    lines = [BEGIN, "", INTRO, ""]
    for entry_point, spec in specs.items():
        if len(specs) > 1:
            summary = _cell(_markup(str(spec.get("short_description", ""))))
            lines += [f"Entry point `{entry_point}`: {summary}.".replace("..", "."), ""]
        options = spec.get("options") or {}
        if not options:
            lines += ["No variables.", ""]
            continue
        lines += ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
        lines += list(_rows(options))
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _section(readme_text: str, readme: Path) -> tuple[int, int]:
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start:
        raise RoleDocsError(
            f"{readme}: no generated section (the BEGIN and END markers of tools/role_docs.py)"
        )
    return start, end + len(END)


def readme_problems(role: Path, specs: Mapping[str, Any]) -> list[str]:
    readme = role / "README.md"
    text = readme.read_text()
    start, end = _section(text, readme)
    current, wanted = text[start:end], render(specs)
    if current == wanted:
        return []
    diff = difflib.unified_diff(
        current.splitlines(),
        wanted.splitlines(),
        f"{readme} (now)",
        f"{readme} (from meta/argument_specs.yml)",
        lineterm="",
    )
    return [
        f"{readme}: the variables section differs from the spec (run tools/role_docs.py --write):\n"
        + "\n".join(diff)
    ]


def write_readme(role: Path, specs: Mapping[str, Any]) -> bool:
    """Rewrite the generated section; whether the file changed."""
    readme = role / "README.md"
    text = readme.read_text()
    start, end = _section(text, readme)
    new = text[:start] + render(specs) + text[end:]
    if new == text:
        return False
    readme.write_text(new)
    return True


def same(left: Any, right: Any) -> bool:
    """Equal as Ansible would use them: true is not 1, "1" is not 1, 0 and 0.0 are equal."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def defaults_problems(role: Path, specs: Mapping[str, Any]) -> list[str]:
    defaults = load_yaml(role / "defaults" / "main.yml") or {}
    where = f"{role.name}:"
    problems = []
    declared: dict[str, list[tuple[str, Any]]] = {}
    for entry_point, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            declared.setdefault(name, []).append((entry_point, (option or {}).get("default", NO_DEFAULT)))
    for name in defaults:
        if name not in declared:
            problems.append(
                f"{where} defaults/main.yml sets {name}, which meta/argument_specs.yml does not declare"
            )
    for name, entries in declared.items():
        for entry_point, default in entries:
            spec_side = f"meta/argument_specs.yml ({entry_point})"
            if default is NO_DEFAULT and name in defaults:
                value = defaults[name]
                problems.append(
                    f"{where} defaults/main.yml sets {name} = {value!r}; {spec_side} gives no default"
                )
            elif default is not NO_DEFAULT and name not in defaults:
                problems.append(
                    f"{where} {spec_side} gives {name} the default {default!r};"
                    " defaults/main.yml does not set it"
                )
            elif default is not NO_DEFAULT and not same(default, defaults[name]):
                problems.append(
                    f"{where} {name}: {spec_side} default {default!r}, defaults/main.yml {defaults[name]!r}"
                )
    return problems


def roles_in(root: Path) -> list[Path]:
    return sorted(path.parent.parent for path in root.glob("roles/*/meta/argument_specs.yml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when a README, the defaults or the spec disagree"
    )
    mode.add_argument("--write", action="store_true", help="rewrite the READMEs' generated sections")
    parser.add_argument(
        "roles", nargs="*", type=Path, help="role directories (default: every role of the repository)"
    )
    args = parser.parse_args(argv)
    roles = args.roles or roles_in(REPO_ROOT)
    problems: list[str] = []
    for role in roles:
        try:
            specs = specs_of(role)
            if args.write and write_readme(role, specs):
                print(f"wrote {role / 'README.md'}")
            problems += defaults_problems(role, specs)
            if args.check:
                problems += readme_problems(role, specs)
        except RoleDocsError as error:
            problems.append(str(error))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
