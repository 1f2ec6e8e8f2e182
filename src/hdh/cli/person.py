"""``hdh person object|objections|erase``: the right to object, and erasure."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import app, out, principal, print_json, state, stdin_line
from hdh.governance.erasure import erase_person
from hdh.governance.objections import list_objections, record_objection

person_app = typer.Typer(help="People whose data the hub holds: objections.", no_args_is_help=True)
app.add_typer(person_app, name="person")


@person_app.command("object")
def object_(
    ctx: typer.Context,
    identifier_stdin: Annotated[
        bool,
        typer.Option(
            "--identifier-stdin",
            help="Read the person's identifier (as in the source files) from standard input.",
        ),
    ] = False,
    pseudonym: Annotated[str | None, typer.Option(help="Or: the person's hub pseudonym.")] = None,
    secret_version: Annotated[
        int | None, typer.Option(help="The secret version of --pseudonym (default: the newest).")
    ] = None,
    note: Annotated[
        str, typer.Option(help="The request's reference (kept in the audit log).")
    ] = "",
) -> None:
    """Record that a person objects to further use of their data: new versions and
    project reads leave their rows out. Only pseudonyms are kept, never the identifier."""
    identifier = stdin_line("identifier") if identifier_stdin else None
    with state(ctx).open_hub() as hub:
        found = record_objection(
            hub,
            principal(hub),
            identifier=identifier,
            pseudonym=pseudonym,
            secret_version=secret_version,
            note=note,
        )
    out().print(
        f"Recorded the objection (pseudonym {found[0].pseudonym[:8]}…, secret version"
        f"{'s' if len(found) > 1 else ''} {', '.join(str(f.secret_version) for f in found)}): "
        "new versions and project reads leave this person out."
    )


@person_app.command("objections")
def objections(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The objections recorded (pseudonyms, never identifiers)."""
    with state(ctx).open_hub() as hub:
        found = list_objections(hub, principal(hub))
    if as_json:
        print_json([f.__dict__ for f in found])
        return
    table = Table()
    for column in ("#", "pseudonym", "secret version", "recorded by", "when (UTC)", "note"):
        table.add_column(column)
    for f in found:
        table.add_row(
            str(f.id), f.pseudonym, str(f.secret_version), f.recorded_by, f.recorded_at[:19], f.note
        )
    out().print(table)


@person_app.command("erase")
def erase(
    ctx: typer.Context,
    identifier_stdin: Annotated[
        bool,
        typer.Option(
            "--identifier-stdin",
            help="Read the person's identifier (as in the source files) from standard input.",
        ),
    ] = False,
    pseudonym: Annotated[str | None, typer.Option(help="Or: the person's hub pseudonym.")] = None,
    secret_version: Annotated[
        int | None, typer.Option(help="The secret version of --pseudonym (default: the newest).")
    ] = None,
    note: Annotated[
        str, typer.Option(help="The request's reference (kept in the audit log).")
    ] = "",
) -> None:
    """Erase a person's rows from every stored version (and quarantine): the parts that
    hold them are rewritten, their manifests record the erasure, the objection is
    recorded. Administrators only; audited."""
    identifier = stdin_line("identifier") if identifier_stdin else None
    with state(ctx).open_hub() as hub:
        report = erase_person(
            hub,
            principal(hub),
            identifier=identifier,
            pseudonym=pseudonym,
            secret_version=secret_version,
            note=note,
        )
    console = out()
    console.print(
        f"Erased {report.rows} row{'s' if report.rows != 1 else ''} of pseudonym "
        f"{report.pseudonym[:8]}… from {len(report.versions)} version"
        f"{'s' if len(report.versions) != 1 else ''}; the objection is recorded."
    )
    for version, rows in report.versions.items():
        extra = report.quarantined.get(version, 0)
        console.print(f"  {version}: {rows} rows" + (f", {extra} quarantined" if extra else ""))
