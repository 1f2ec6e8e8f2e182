"""``hdh location add|list|test|remove``."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import acting, app, out, print_json, state
from hdh.storage.locations import (
    PRESETS,
    LocationSpec,
    add_location,
    describe_location,
    get_location,
    list_locations,
    open_backend,
    remove_location,
)

location_app = typer.Typer(
    help="Storage locations: where objects are kept, and under which jurisdiction.",
    no_args_is_help=True,
)
app.add_typer(location_app, name="location")


@location_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A short name: lower-case letters, digits, - or _.")],
    kind: Annotated[str | None, typer.Option(help="local, s3 or azure (or give --preset).")] = None,
    preset: Annotated[
        str | None, typer.Option(help=f"One of: {', '.join(sorted(PRESETS))}.")
    ] = None,
    path: Annotated[str | None, typer.Option(help="Folder, for a local location.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Service URL (S3; Azure).")] = None,
    bucket: Annotated[str | None, typer.Option(help="S3 bucket.")] = None,
    account: Annotated[str | None, typer.Option(help="Azure storage account.")] = None,
    container: Annotated[str | None, typer.Option(help="Azure container.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Key prefix inside the bucket.")] = None,
    region: Annotated[str | None, typer.Option(help="Provider region, e.g. fr-par.")] = None,
    country: Annotated[
        str | None, typer.Option(help="ISO 3166 code of the country the data is stored in.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Who operates the storage.")] = None,
    certification: Annotated[
        list[str] | None,
        typer.Option(help="A certification of this location, e.g. hds, secnumcloud (repeat)."),
    ] = None,
    extraterritorial: Annotated[
        list[str] | None,
        typer.Option(help="Exposure to non-EU law, e.g. us-cloud-act (repeat)."),
    ] = None,
    access_key_env: Annotated[
        str | None, typer.Option(help="Variable holding the S3 access key id.")
    ] = None,
    secret_key_env: Annotated[
        str | None, typer.Option(help="Variable holding the S3 secret key.")
    ] = None,
    account_key_env: Annotated[
        str | None, typer.Option(help="Variable holding the Azure account key.")
    ] = None,
    credentials_file: Annotated[
        str | None, typer.Option(help="A 0600 TOML file holding the credentials instead.")
    ] = None,
) -> None:
    """Record a storage location. Credentials stay outside the hub's database."""
    spec = LocationSpec(
        name=name,
        kind=kind,
        preset=preset,
        path=path,
        endpoint=endpoint,
        bucket=bucket,
        account=account,
        container=container,
        prefix=prefix,
        region=region,
        country=country,
        provider=provider,
        certifications=certification or [],
        extraterritorial=extraterritorial or [],
        access_key_env=access_key_env,
        secret_key_env=secret_key_env,
        account_key_env=account_key_env,
        credentials_file=credentials_file,
    )
    with state(ctx).open_hub() as hub, hub.transaction() as session:
        who = acting(hub, "hub.operate")
        location = add_location(session, spec, actor=who.actor)
        info = describe_location(location)
    out().print(
        f"Added location {info['name']!r}: {info['kind']} {info['uri']}, {info['country']}"
        f"{', ' + info['region'] if info['region'] else ''}, provider {info['provider']}"
    )
    if info["extraterritorial"]:
        out().print(f"  exposure to non-EU law: {', '.join(info['extraterritorial'])}")
    out().print(f"  credentials: {info['credentials']}")
    out().print(f"Check it with: hdh location test {info['name']}")


@location_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the locations with their jurisdiction, certifications and exposure."""
    with state(ctx).open_hub() as hub, hub.read() as session:
        acting(hub, "hub.operate")
        rows = [describe_location(loc) for loc in list_locations(session)]
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("name", "kind", "where", "provider", "region", "country", "certifications"):
        table.add_column(column)
    table.add_column("exposure")
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"],
            r["uri"],
            r["provider"],
            r["region"] or "-",
            r["country"],
            ", ".join(r["certifications"]) or "-",
            ", ".join(r["extraterritorial"]) or "none",
        )
    out().print(table)


@location_app.command("test")
def probe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The location to test.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write, read, range-read, list and delete a probe object; report each step's latency.

    Exits 1 when a step fails.
    """
    from hdh.storage.objects import check_location

    with state(ctx).open_hub() as hub:
        who = acting(hub, "hub.operate")
        steps = check_location(hub, name, actor=who.actor)
    ok = all(s.ok for s in steps)
    if as_json:
        print_json(
            {
                "location": name,
                "ok": ok,
                "steps": [
                    {"step": s.step, "ok": s.ok, "ms": round(s.ms, 1), "error": s.error}
                    for s in steps
                ],
            }
        )
    else:
        console = out()
        for s in steps:
            mark = "ok  " if s.ok else "FAIL"
            console.print(f"{mark} {s.step:<12} {s.ms:8.1f} ms{'  ' + s.error if s.error else ''}")
        console.print(f"Location {name!r} " + ("works." if ok else "does not work."))
    if not ok:
        raise typer.Exit(1)


@location_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The location to forget.")],
) -> None:
    """Forget a location; refused while it holds any object."""
    with state(ctx).open_hub() as hub:
        who = acting(hub, "hub.operate")
        with hub.read() as session:
            location = get_location(session, name)
        backend = open_backend(location, hub_dir=hub.settings.hub_dir, environ=os.environ)
        with hub.transaction() as session:
            remove_location(session, name, backend=backend, actor=who.actor)
    out().print(f"Removed location {name!r}.")
