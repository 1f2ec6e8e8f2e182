"""``hdh dataset ingest|list|versions|show``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from hdh.catalog.models import FREQUENCIES
from hdh.catalog.service import describe, get_metadata
from hdh.cli import acting, app, out, print_json, state
from hdh.errors import InvalidInput
from hdh.ingest.service import (
    IngestOptions,
    IngestResult,
    ingest_file,
    ingest_folder,
    list_datasets,
    read_quarantine,
    read_version,
    version_info,
    versions,
)

dataset_app = typer.Typer(help="Datasets: ingest files, list versions.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("ingest")
def ingest_cmd(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A CSV (.csv, .tsv, .txt, gzipped or not), Parquet or SAS file, or a folder "
            "of them (a collection: one dataset per file)."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="The dataset (created on first ingest). For a folder: the collection."),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            help="COLUMN=ACTION, ACTION one of keep, drop, pseudonymise, year, month, "
            "department, band10 (repeat). In a folder, applies to every file with COLUMN."
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            help="An imported Table Schema the file must conform to; for a folder, 'auto' "
            "takes the schema named as each file."
        ),
    ] = None,
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="COLUMN=PATTERN: how a date column is written, e.g. "
            "BIRTH=%d%b%Y:%H:%M:%S or ENT_DAT=%d%m%Y (repeat).",
        ),
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            help="refuse: a file with rows that break the schema is refused whole. "
            "quarantine: those rows are kept apart, encrypted, and the rest published."
        ),
    ] = "refuse",
    location: Annotated[str, typer.Option(help="Where to store the version.")] = "local",
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file.")] = "utf-8",
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter. Default: detected.")] = None,
    title: Annotated[str | None, typer.Option(help="Catalogue: the dataset's title.")] = None,
    description: Annotated[str | None, typer.Option(help="Catalogue: what it holds.")] = None,
    producer: Annotated[str | None, typer.Option(help="Catalogue: who produces it.")] = None,
    frequency: Annotated[
        str | None,
        typer.Option(help="Catalogue: how often it is updated (" + ", ".join(FREQUENCIES) + ")."),
    ] = None,
    legal_basis: Annotated[
        str | None, typer.Option(help="Catalogue: the legal basis for holding it.")
    ] = None,
    keyword: Annotated[
        list[str] | None, typer.Option(help="Catalogue: a keyword (repeat).")
    ] = None,
) -> None:
    """Ingest a file (or a folder) as new immutable versions: checked, pseudonymised,
    encrypted.

    Columns that look like direct identifiers must each get a --rule.
    """
    if frequency is not None and frequency not in FREQUENCIES:
        raise InvalidInput(
            f"--frequency {frequency!r} is not known", hint=f"use one of {', '.join(FREQUENCIES)}"
        )
    metadata = {
        "title": title,
        "description": description,
        "producer": producer,
        "frequency": frequency,
        "legal_basis": legal_basis,
        "keywords": tuple(keyword) if keyword else None,
    }
    options = IngestOptions(
        rules=tuple(rule or ()),
        location=location,
        encoding=encoding,
        delimiter=delimiter,
        schema=schema,
        formats=tuple(fmt or ()),
        on_error=on_error,
        metadata=tuple((k, v) for k, v in metadata.items() if v is not None),
    )
    console = out()
    with state(ctx).open_hub() as hub, _progress() as bar:
        who = acting(hub, "dataset.ingest")
        if path.is_dir():
            folder = ingest_folder(
                hub,
                path,
                actor=who.actor,
                options=options,
                collection=name,
                progress=bar.update,
            )
            results = folder.results
            console.print(
                f"Collection {folder.collection!r}: {len(results)} of "
                f"{len(results) + len(folder.failed)} tables published or already there."
            )
            for note in folder.notes:
                console.print(f"  note: {note}")
        else:
            if name is None:
                raise InvalidInput("--name is missing", hint="name the dataset: --name NAME")
            results = [
                ingest_file(
                    hub,
                    path,
                    name=name,
                    actor=who.actor,
                    options=options,
                    progress=partial(bar.update, name),
                )
            ]
    for result in results:
        _print_result(console, result)
    if path.is_dir() and folder.failed:
        for dataset, error in folder.failed:
            console.print(f"  refused {dataset}: {error}")
        count = len(folder.failed)
        raise InvalidInput(
            f"{count} table{'s' if count != 1 else ''} of {path.name} "
            f"{'were' if count != 1 else 'was'} refused: "
            f"{', '.join(d for d, _ in folder.failed)}",
            hint="fix them (the reasons are above) and run the command again; the tables "
            "already published are skipped",
        )


class _Bar:
    """Rows and bytes read, on standard error, while a terminal watches."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def update(self, label: str, rows: int, done: int, total: int) -> None:
        if self.progress is None:
            return
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total, rows=0)
        self.progress.update(self.tasks[label], completed=done, rows=rows)


@contextmanager
def _progress() -> Iterator[_Bar]:
    if not sys.stderr.isatty():
        yield _Bar(None)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        yield _Bar(progress)


def _print_result(console: Console, result: IngestResult) -> None:
    if result.already:
        console.print(
            f"Already ingested: {result.source} is version {result.version} of "
            f"{result.dataset!r} (same SHA-256 and rules); nothing new published."
        )
        return
    console.print(
        f"Published {result.dataset!r} version {result.version}: {result.rows} rows in "
        f"{result.parts} encrypted part{'s' if result.parts != 1 else ''} "
        f"({result.stored_bytes} bytes)."
    )
    if result.quarantined:
        console.print(
            f"  {result.quarantined} row{'s' if result.quarantined != 1 else ''} broke the "
            "schema and are in quarantine (hdh dataset quarantine "
            f"{result.dataset} --version {result.version})."
        )
    for warning in result.warnings:
        console.print(f"  warning: {warning}")


@dataset_app.command("describe")
def describe_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset.")],
    title: Annotated[str | None, typer.Option(help="Its title.")] = None,
    description: Annotated[str | None, typer.Option(help="What it holds.")] = None,
    producer: Annotated[str | None, typer.Option(help="Who produces it.")] = None,
    frequency: Annotated[
        str | None, typer.Option(help="How often it is updated (" + ", ".join(FREQUENCIES) + ").")
    ] = None,
    legal_basis: Annotated[str | None, typer.Option(help="The legal basis for holding it.")] = None,
    keyword: Annotated[
        list[str] | None, typer.Option(help="A keyword (repeat; replaces the keywords).")
    ] = None,
) -> None:
    """Set a dataset's catalogue description (only the options given change)."""
    with state(ctx).open_hub() as hub:
        who = acting(hub, "catalog.manage")
        meta = describe(
            hub,
            name,
            actor=who.actor,
            title=title,
            description=description,
            producer=producer,
            frequency=frequency,
            legal_basis=legal_basis,
            keywords=list(keyword) if keyword else None,
        )
    out().print(
        f"Described {name!r}: "
        + ", ".join(
            f"{k}={v!r}" for k, v in meta.items() if k in ("title", "producer", "frequency")
        )
    )


@dataset_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The datasets and their latest version."""
    with state(ctx).open_hub() as hub:
        acting(hub, "catalog.read")
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
        acting(hub, "catalog.read")
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
        acting(hub, "dataset.read" if rows else "catalog.read")
        chosen = version_info(hub, name, version)
        meta = get_metadata(hub, name)
        table = read_version(hub, name, chosen.number) if rows else None
    console = out()
    console.print(f"{name!r} version {chosen.number}: {chosen.rows} rows from {chosen.source_name}")
    for key, label in (
        ("title", "title"),
        ("description", "description"),
        ("producer", "producer"),
        ("frequency", "updated"),
        ("legal_basis", "legal basis"),
        ("collection", "collection"),
        ("schema", "schema"),
    ):
        if meta[key] and not (key == "frequency" and meta[key] == "unknown"):
            console.print(f"  {label}: {meta[key]}")
    if meta["keywords"]:
        console.print(f"  keywords: {', '.join(meta['keywords'])}")
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


@dataset_app.command("quarantine")
def quarantine_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset.")],
    version: Annotated[int | None, typer.Option(help="Default: the latest.")] = None,
    rows: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The rows a version kept apart because they broke its schema (as the source gave
    them, not pseudonymised: reading them is audited)."""
    with state(ctx).open_hub() as hub:
        who = acting(hub, "dataset.read")
        table = read_quarantine(hub, name, version, actor=who.actor)
    shown = table.slice(0, rows).to_pylist()
    if as_json:
        print_json(shown)
        return
    console = out()
    console.print(f"{table.num_rows} quarantined rows of {name!r}:")
    for row in shown:
        console.print(f"  row {row['_row']}: {row['_problems']}")
