"""``hdh catalog import-schema|schemas|schema|search|export``."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hdh.catalog.export import export_healthdcat
from hdh.catalog.service import get_schema, import_schemas, list_schemas, search
from hdh.cli import acting, app, out, print_json, state
from hdh.errors import InvalidInput

catalog_app = typer.Typer(
    help="The catalogue: Table Schemas, search, HealthDCAT-AP export.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("import-schema")
def import_schema(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(help="A folder of Table Schema JSON files, or an OMOP CDM field-level CSV."),
    ],
    prefix: Annotated[
        str | None,
        typer.Option(help="OMOP: name the schemas PREFIX.table (default: omop-VERSION)."),
    ] = None,
) -> None:
    """Load every Frictionless Table Schema under a folder into the catalogue.

    Files under a 'nomenclatures' folder are nomenclatures (reference tables of codes);
    the others are table schemas. All or nothing: one bad file imports none. An OMOP CDM
    field-level CSV (OHDSI's OMOP_CDMv5.x_Field_Level.csv) gives one schema per CDM table.
    """
    with state(ctx).open_hub() as hub:
        who = acting(hub, "catalog.manage")
        result = import_schemas(hub, directory, actor=who.actor, prefix=prefix)
    out().print(
        f"Imported {result.tables} table schemas and {result.nomenclatures} nomenclatures "
        f"from {directory}: {len(result.added)} new, {len(result.updated)} updated, "
        f"{len(result.unchanged)} unchanged."
    )


@catalog_app.command("schemas")
def schemas(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="table or nomenclature.")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product (e.g. EGB).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The imported schemas."""
    if kind not in (None, "table", "nomenclature"):
        raise InvalidInput(f"--kind {kind!r} is not known", hint="use table or nomenclature")
    with state(ctx).open_hub() as hub:
        acting(hub, "catalog.read")
        entries = list_schemas(hub, kind=kind, product=product)
    if as_json:
        print_json(
            [
                {
                    "name": e.name,
                    "kind": e.kind,
                    "product": e.product,
                    "title": e.title,
                    "fields": len(e.schema.fields),
                    "source": e.source,
                }
                for e in entries
            ]
        )
        return
    table = Table()
    for column in ("schema", "kind", "product", "fields", "title"):
        table.add_column(column)
    for e in entries:
        table.add_row(e.name, e.kind, e.product, str(len(e.schema.fields)), e.title)
    out().print(table)


@catalog_app.command("schema")
def schema(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schema (e.g. EB_PRS_F).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the Table Schema.")] = False,
) -> None:
    """One schema: its fields, types, constraints and nomenclatures."""
    with state(ctx).open_hub() as hub:
        acting(hub, "catalog.read")
        entry = get_schema(hub, name)
    if as_json:
        print_json(entry.schema.raw)
        return
    console = out()
    console.print(f"{entry.name} ({entry.kind}, {entry.product}): {entry.title}")
    if entry.schema.primary_key:
        console.print(f"  primary key: {', '.join(entry.schema.primary_key)}")
    table = Table()
    for column in ("field", "type", "constraints", "nomenclature", "description"):
        table.add_column(column)
    for f in entry.schema.fields:
        constraints = ", ".join(f"{k}={v}" for k, v in f.constraints.items())
        nomenclature = "" if f.nomenclature in ("", "-") else f.nomenclature
        table.add_row(f.name, f.type, constraints, nomenclature, f.description)
    console.print(table)


@catalog_app.command("search")
def search_cmd(
    ctx: typer.Context,
    words: Annotated[list[str], typer.Argument(help="Words, all of which must match.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find datasets and schemas by name, title, description, keyword, variable or
    nomenclature (case and accents ignored)."""
    with state(ctx).open_hub() as hub:
        acting(hub, "catalog.read")
        hits = search(hub, " ".join(words))
    if as_json:
        print_json([h.__dict__ for h in hits])
        return
    if not hits:
        out().print("Nothing matches.")
        return
    table = Table()
    for column in ("kind", "name", "title", "matched in"):
        table.add_column(column)
    for h in hits:
        table.add_row(h.kind, h.name, h.title, ", ".join(h.matched))
    out().print(table)


@catalog_app.command("export")
def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="healthdcat-ap")] = "healthdcat-ap",
    output: Annotated[
        Path | None, typer.Option(help="Write to this file (default: standard output).")
    ] = None,
) -> None:
    """Write the catalogue as HealthDCAT-AP JSON-LD (the EHDS metadata standard)."""
    if fmt != "healthdcat-ap":
        raise InvalidInput(f"--format {fmt!r} is not known", hint="use healthdcat-ap")
    with state(ctx).open_hub() as hub:
        acting(hub, "catalog.read")
        document = export_healthdcat(hub)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    # Written beside the target and renamed: a failed export never leaves half a file.
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=output.parent, prefix=f".{output.name}.", delete=False
    ) as fh:
        fh.write(text)
    Path(fh.name).replace(output)
    datasets = sum(1 for node in document["@graph"] if node.get("@type") == "dcat:Dataset")
    out().print(f"Wrote {output}: {datasets} datasets, HealthDCAT-AP JSON-LD.")
