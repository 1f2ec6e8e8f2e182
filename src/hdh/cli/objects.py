"""``hdh object put|get|list``: files in and out of a location, encrypted and checked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import acting, app, out, print_json, state
from hdh.errors import InvalidInput
from hdh.storage.objects import list_objects, read_object, write_object

object_app = typer.Typer(
    help="Objects on a location: always encrypted, placed by the policy, verified on read.",
    no_args_is_help=True,
)
app.add_typer(object_app, name="object")


def _chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


@object_app.command("put")
def put(
    ctx: typer.Context,
    location: Annotated[str, typer.Argument(help="The location to write to.")],
    key: Annotated[str, typer.Argument(help="The object's key, e.g. raw/visits.csv.")],
    file: Annotated[Path, typer.Argument(help="The file to store.")],
    data_class: Annotated[
        str, typer.Option("--data-class", help="health or other: what the policy governs.")
    ] = "health",
    sensitivity: Annotated[
        str, typer.Option("--sensitivity", help="identifiers, clinical or other: the KEK used.")
    ] = "clinical",
) -> None:
    """Encrypt FILE and store it as KEY, if the policy allows that data on LOCATION."""
    if not file.is_file():
        raise InvalidInput(f"{file} is not a file", hint="give the path of the file to store")
    with state(ctx).open_hub() as hub:
        who = acting(hub, "hub.operate")
        record = write_object(
            hub,
            location,
            key,
            _chunks(file),
            actor=who.actor,
            data_class=data_class,
            sensitivity=sensitivity,
        )
    out().print(
        f"Stored {key!r} on {location!r}: {record.plain_size} bytes, {record.size} encrypted, "
        f"SHA-256 {record.sha256[:16]}…"
    )


@object_app.command("get")
def get(
    ctx: typer.Context,
    location: Annotated[str, typer.Argument(help="The location to read from.")],
    key: Annotated[str, typer.Argument(help="The object's key.")],
    output: Annotated[Path, typer.Argument(help="Where to write it; - for standard output.")],
) -> None:
    """Read, verify and decrypt KEY. Nothing is left at OUTPUT if verification fails."""
    with state(ctx).open_hub() as hub:
        acting(hub, "hub.operate")
        if str(output) == "-":
            for piece in read_object(hub, location, key):
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return
        partial = output.with_name(f".{output.name}.partial")
        try:
            with partial.open("wb") as fh:
                for piece in read_object(hub, location, key):
                    fh.write(piece)
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    out().print(f"Wrote {output}.")


@object_app.command("list")
def list_(
    ctx: typer.Context,
    location: Annotated[str, typer.Argument(help="The location.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The objects the hub wrote to LOCATION."""
    with state(ctx).open_hub() as hub:
        acting(hub, "hub.operate")
        records = list_objects(hub, location)
    if as_json:
        print_json([r.__dict__ for r in records])
        return
    table = Table()
    for column in ("key", "bytes", "stored", "class", "sensitivity", "sha256", "written (UTC)"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.key,
            str(r.plain_size),
            str(r.size),
            r.data_class,
            r.sensitivity,
            r.sha256[:16] + "…",
            r.created_at[:19],
        )
    out().print(table)
