"""``hdh init``, ``hdh status``, ``hdh upgrade``, ``hdh serve``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import app, out, print_json, state
from hdh.config import mask_url
from hdh.crypto import KeyFileInfo
from hdh.hub import hub_status, init_hub, upgrade_hub


@app.command()
def init(
    ctx: typer.Context,
    folder: Annotated[
        Path | None,
        typer.Argument(help="A new or empty folder for the hub. Default: the --hub folder."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The hub's name. Default: the folder's name.")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="HDH_DATABASE_URL",
            help="postgresql://USER:PASSWORD@HOST:PORT/DB for an empty PostgreSQL database. "
            "Default: a SQLite file in the hub folder.",
            show_default=False,
        ),
    ] = None,
    country: Annotated[
        str, typer.Option(help="ISO country code of the machine holding the hub's local storage.")
    ] = "FR",
) -> None:
    """Create a hub in a new or empty folder.

    Writes hub.toml, the metadata database, a local key file (mode 0600) and a local
    storage location; nothing is left behind if any step fails.
    """
    target = folder if folder is not None else state(ctx).hub_dir
    hub = init_hub(target, name=name, database_url=database_url, country=country)
    with hub:
        s = hub.settings
        console = out()
        console.print(f"Created hub {s.name!r} in {s.hub_dir}")
        console.print(f"  database:  {mask_url(s.database_url.get_secret_value())}")
        console.print(
            f"  key file:  {s.key_path} (mode 0600). Back it up now: without it the "
            "hub's encrypted data cannot be read."
        )
        console.print("  storage:   location 'local' in storage/")
        console.print(f"Next: hdh --hub {s.hub_dir} status")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the hub holds, its locations, and whether its audit chain verifies.

    Exits 1 when the chain does not verify or the key file is missing or exposed.
    """
    with state(ctx).open_hub() as hub:
        st = hub_status(hub)
    healthy = st.chain.ok and isinstance(st.key_file, KeyFileInfo)
    if as_json:
        print_json(st.to_dict())
        if not healthy:
            raise typer.Exit(1)
        return
    console = out()
    console.print(f"Hub {st.name!r} ({st.hub_id})")
    console.print(f"  folder:    {st.hub_dir}")
    console.print(f"  created:   {st.created_at}")
    console.print(f"  database:  {st.database} (schema {st.schema_revision})")
    if isinstance(st.key_file, KeyFileInfo):
        console.print(
            f"  key file:  {st.key_file.path} (mode {st.key_file.mode_text}, "
            f"{st.key_file.keys} key{'' if st.key_file.keys == 1 else 's'})"
        )
    else:
        console.print(f"  key file:  PROBLEM: {st.key_file}")
    plural = "" if st.audit_events == 1 else "s"
    console.print(f"  audit:     {st.audit_events} event{plural}")
    if st.chain.ok:
        head = f"#{st.chain.head.seq} {st.chain.head.hash[:12]}" if st.chain.head else "empty"
        console.print(f"  chain:     verifies (head {head})")
    else:
        assert st.chain.problem is not None
        console.print(f"  chain:     BROKEN: {st.chain.problem.message}")
    table = Table(title="Storage locations", title_justify="left")
    for column in ("name", "kind", "where", "provider", "country", "certifications", "exposure"):
        table.add_column(column)
    for loc in st.locations:
        table.add_row(
            loc["name"],
            loc["kind"],
            loc["uri"],
            loc["provider"],
            loc["country"],
            ", ".join(loc["certifications"]) or "-",
            ", ".join(loc["extraterritorial"]) or "none",
        )
    console.print(table)
    if not healthy:
        raise typer.Exit(1)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Bring the hub's database schema up to this version of hdh."""
    before, after = upgrade_hub(state(ctx).hub_dir, os.environ)
    if before == after:
        out().print(f"The database schema is up to date (revision {after}).")
    else:
        out().print(f"Upgraded the database schema from {before} to {after}.")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on. Default: server.host in hub.toml.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on. Default: server.port in hub.toml.")
    ] = None,
) -> None:
    """Serve the web pages and the REST API (under /api/v1; OpenAPI document at
    /openapi.json) for this hub."""
    from hdh.api import serve as serve_hub

    hub = state(ctx).open_hub()
    try:
        serve_hub(hub, host or hub.settings.server.host, port or hub.settings.server.port)
    finally:
        hub.close()
