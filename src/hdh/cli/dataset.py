"""``hdh dataset ingest|list|versions|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import app, out, print_json, state
from hdh.errors import NotFound
from hdh.hub import system_actor
from hdh.ingest.service import ingest, list_datasets, read_version, versions

dataset_app = typer.Typer(help="Datasets: ingest files, list versions.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("ingest")
def ingest_cmd(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="A CSV (.csv, .tsv, .txt, gzipped or not), Parquet, or SAS file.")
    ],
    name: Annotated[str, typer.Option(help="The dataset (created on first ingest).")],
    rule: Annotated[
        list[str] | None,
        typer.Option(
            help="COLUMN=ACTION, ACTION one of keep, drop, pseudonymise, year, month, "
            "department, band10 (repeat)."
        ),
    ] = None,
    location: Annotated[str, typer.Option(help="Where to store the version.")] = "local",
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file.")] = "utf-8",
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter. Default: detected.")] = None,
    description: Annotated[str, typer.Option(help="What the dataset holds.")] = "",
) -> None:
    """Ingest a file as a new immutable version: checked, pseudonymised, encrypted.

    Columns that look like direct identifiers must each get a --rule.
    """
    with state(ctx).open_hub() as hub:
        result = ingest(
            hub,
            path,
            name=name,
            actor=system_actor(),
            location=location,
            rules=rule or [],
            encoding=encoding,
            delimiter=delimiter,
            description=description,
        )
    console = out()
    if result.already:
        console.print(
            f"Already ingested: {path.name} is version {result.version} of {name!r} "
            "(same SHA-256); nothing new published."
        )
        return
    console.print(
        f"Published {name!r} version {result.version}: {result.rows} rows in "
        f"{result.parts} encrypted part{'s' if result.parts != 1 else ''} "
        f"({result.stored_bytes} bytes)."
    )
    for warning in result.warnings:
        console.print(f"  warning: {warning}")


@dataset_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The datasets and their latest version."""
    with state(ctx).open_hub() as hub:
        rows = list_datasets(hub)
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("dataset", "latest", "versions", "description"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], str(r["latest_version"]), str(r["versions"]), r["description"])
    out().print(table)


@dataset_app.command("versions")
def versions_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version of a dataset with its source, rows and rules."""
    with state(ctx).open_hub() as hub:
        found = versions(hub, name)
    if as_json:
        print_json([v.__dict__ for v in found])
        return
    table = Table()
    for column in ("version", "rows", "source", "sha256", "location", "published (UTC)"):
        table.add_column(column)
    for v in found:
        table.add_row(
            str(v.number),
            str(v.rows),
            v.source_name,
            v.source_sha256[:16] + "…",
            v.location,
            v.created_at[:19],
        )
    out().print(table)


@dataset_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset.")],
    version: Annotated[int | None, typer.Option(help="Default: the latest.")] = None,
    rows: Annotated[int, typer.Option(help="Rows to print (0 for none).")] = 0,
) -> None:
    """A version's schema and rules, and optionally its first rows."""
    with state(ctx).open_hub() as hub:
        found = versions(hub, name)
        chosen = (
            found[-1] if version is None else next((v for v in found if v.number == version), None)
        )
        if chosen is None:
            raise NotFound(
                f"dataset {name!r} has no version {version}",
                hint=f"its versions are 1 to {found[-1].number}",
            )
        table = read_version(hub, name, chosen.number) if rows else None
    console = out()
    console.print(f"{name!r} version {chosen.number}: {chosen.rows} rows from {chosen.source_name}")
    profiles = {c["name"]: c for c in chosen.manifest.get("profile", {}).get("columns", [])}
    for column in chosen.manifest["schema"]:
        action = chosen.manifest["rules"].get(column["name"], "keep")
        console.print(f"  {column['name']}: {column['type']} ({action})")
        prof = profiles.get(column["name"])
        if prof is None:
            continue
        nulls = "<10" if prof["nulls"] is None else prof["nulls"]
        distinct = f">{prof['distinct_over']}" if prof["distinct"] is None else prof["distinct"]
        facts = [f"nulls {nulls}", f"distinct {distinct}"]
        if "min" in prof:
            facts.append(f"range {prof['min']} to {prof['max']}")
        if prof.get("top"):
            facts.append("top " + ", ".join(f"{t['value']} ({t['count']})" for t in prof["top"]))
        console.print("      " + "; ".join(facts))
    if table is not None:
        for row in table.slice(0, rows).to_pylist():
            console.print(row)
