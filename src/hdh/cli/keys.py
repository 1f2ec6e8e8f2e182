"""``hdh key list|rotate|retire|rotate-pseudonyms``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import acting, app, out, print_json, state
from hdh.crypto.service import key_usage, retire_key, rotate_keys, rotate_pseudonym_secret

key_app = typer.Typer(
    help="Key-encryption keys: one versioned key per sensitivity class.", no_args_is_help=True
)
app.add_typer(key_app, name="key")


@key_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every KEK version, whether it is current or retired, and how many data keys it wraps."""
    with state(ctx).open_hub() as hub:
        acting(hub, "hub.operate")
        usage = key_usage(hub)
    if as_json:
        print_json([u.__dict__ for u in usage])
        return
    table = Table()
    for column in ("class", "version", "created (UTC)", "state", "data keys"):
        table.add_column(column)
    for u in usage:
        status = "current" if u.current else ("retired" if u.retired else "kept")
        table.add_row(u.sensitivity, str(u.version), u.created_at[:19], status, str(u.data_keys))
    out().print(table)


@key_app.command("rotate")
def rotate(
    ctx: typer.Context,
    sensitivity: Annotated[
        str | None,
        typer.Option("--class", help="identifiers, clinical or other. Default: all three."),
    ] = None,
) -> None:
    """Add a new KEK version and rewrap the data keys under it (no object is rewritten)."""
    with state(ctx).open_hub() as hub:
        who = acting(hub, "hub.operate")
        done = rotate_keys(hub, sensitivity, actor=who.actor)
    for cls, version in done.items():
        out().print(f"{cls}: now version {version}; data keys rewrapped.")


@key_app.command("retire")
def retire(
    ctx: typer.Context,
    sensitivity: Annotated[str, typer.Argument(help="identifiers, clinical or other.")],
    version: Annotated[int, typer.Argument(help="The version to destroy.")],
) -> None:
    """Destroy an old KEK version; refused while any data key still needs it."""
    with state(ctx).open_hub() as hub:
        who = acting(hub, "hub.operate")
        retire_key(hub, sensitivity, version, actor=who.actor)
    out().print(f"Retired {sensitivity} key version {version}: its material is destroyed.")


@key_app.command("rotate-pseudonyms")
def rotate_pseudonyms(ctx: typer.Context) -> None:
    """Add a pseudonymisation secret version for the datasets ingested from now on.
    Published versions keep their pseudonyms; projects keep seeing the same pseudonym
    for the same person across versions before and after."""
    with state(ctx).open_hub() as hub:
        who = acting(hub, "hub.operate")
        version = rotate_pseudonym_secret(hub, actor=who.actor)
    out().print(
        f"Pseudonymisation secret now version {version}: new datasets are pseudonymised "
        "under it; earlier versions are kept to link them."
    )
