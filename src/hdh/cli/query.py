"""``hdh query PROJECT SQL``: SQL on a project's permitted data."""

from __future__ import annotations

import csv
import io
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from hdh.cli import app, out, principal, print_json, state
from hdh.errors import InvalidInput

MAX_ROWS = 10_000  # as hdh.workspace.governed.MAX_ROWS, without loading the query engine


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


@app.command("query")
def query(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project you work in.")],
    sql: Annotated[str, typer.Argument(help="The SQL; datasets are tables by their names.")],
    limit: Annotated[int, typer.Option(help=f"Rows to return (1 to {MAX_ROWS}).")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many rows first (for the next page).")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    save: Annotated[
        str | None,
        typer.Option(help="Also keep the whole result in the project, as saved.NAME."),
    ] = None,
) -> None:
    """Run SQL on the datasets your project's permits allow (their permitted columns and
    rows, with the project's pseudonyms), with no access to files, network or extensions.
    Audited."""
    from hdh.workspace.governed import run_query

    if fmt not in ("table", "csv", "json"):
        raise InvalidInput(f"--format {fmt!r} is not known", hint="use table, csv or json")
    with state(ctx).open_hub() as hub:
        result = run_query(
            hub, principal(hub), project, sql, max_rows=limit, offset=offset, save=save
        )
    rows = result.table.to_pylist()
    if fmt == "json":
        print_json([{k: _plain(v) for k, v in r.items()} for r in rows])
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.table.column_names)
        writer.writerows([[_plain(v) for v in r.values()] for r in rows])
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table()
        for name in result.table.column_names:
            table.add_column(name)
        for r in rows:
            table.add_row(*("" if v is None else str(_plain(v)) for v in r.values()))
        out().print(table)
    if save:
        sys.stderr.write(f"(saved in the project as saved.{save})\n")
    if result.truncated:
        sys.stderr.write(
            f"(rows {offset + 1} to {offset + len(rows)}; more follow: --offset "
            f"{offset + len(rows)} for the next page, or aggregate)\n"
        )
