"""The docs stay true to the code: generated references are current, links resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "scripts" / "gen_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    checked_in = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert checked_in == generator().render_cli(), "docs/reference/cli.md is stale: run make docs"


def test_openapi_document_is_current() -> None:
    checked_in = (ROOT / "docs" / "reference" / "openapi.json").read_text(encoding="utf-8")
    assert checked_in == generator().render_openapi(), "openapi.json is stale: run make docs"


def test_project_states_diagram_is_current() -> None:
    checked_in = (ROOT / "docs" / "reference" / "project-states.md").read_text(encoding="utf-8")
    assert checked_in == generator().render_project_states(), (
        "docs/reference/project-states.md is stale: run make docs"
    )


def test_readme_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(make \w+)\s*$", quick, flags=re.MULTILINE)
    assert commands == ["make demo", "make test"]


def test_relative_links_in_docs_resolve() -> None:
    pages = [ROOT / "README.md", ROOT / "GLOSSARY.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_every_command_has_its_route_or_says_why_not() -> None:
    """docs/reference/api.md pairs each command of docs/reference/cli.md with routes
    that the OpenAPI document has, or says why it has none."""
    import json
    import re

    root = Path(__file__).parents[2]
    headings = re.findall(r"^## `(hdh[^`]*)`", (root / "docs/reference/cli.md").read_text(),
                          re.MULTILINE)  # fmt: skip
    leaves = {h for h in headings if not any(o.startswith(h + " ") for o in headings)}
    table = (root / "docs/reference/api.md").read_text()
    rows = dict(re.findall(r"^\| `(hdh[^`]*)` \| (.+) \|$", table, re.MULTILINE))
    assert leaves == set(rows), leaves ^ set(rows)
    document = json.loads((root / "docs/reference/openapi.json").read_text())
    known = {f"{method.upper()} {path}" for path, item in document["paths"].items()
             for method in item}  # fmt: skip
    for command, routes in rows.items():
        for route in re.findall(r"`([A-Z]+ /[^`]*)`", routes):
            assert route in known, (command, route)
