"""``hdh permit request|grant|refuse|revoke|list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import app, out, principal, print_json, state
from hdh.governance.permits import PermitInfo, decide, list_permits, request_permit

permit_app = typer.Typer(
    help="Data permits: a project's access to one dataset.", no_args_is_help=True
)
app.add_typer(permit_app, name="permit")


def _summary(p: PermitInfo) -> str:
    version = f"version {p.version}" if p.version else "latest version"
    where = f" where {p.row_filter}" if p.row_filter else ""
    return (
        f"permit #{p.id} ({p.status}): {p.project} on {p.dataset} ({version}), columns "
        f"{', '.join(p.columns)}{where}, until {p.valid_until}"
    )


@permit_app.command("request")
def request(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project.")],
    dataset: Annotated[str, typer.Argument(help="The dataset.")],
    column: Annotated[list[str], typer.Option(help="A column needed (repeat).")],
    row_filter: Annotated[
        str,
        typer.Option(
            "--filter", help="Rows needed, e.g. \"year >= 2015 and region in ('11', '75')\"."
        ),
    ] = "",
    version: Annotated[
        int | None, typer.Option(help="Pin a version (default: the latest).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End date, YYYY-MM-DD.")] = None,
    note: Annotated[str, typer.Option(help="Why the data is needed.")] = "",
) -> None:
    """Ask for access to a dataset for a project (its lead)."""
    with state(ctx).open_hub() as hub:
        info = request_permit(
            hub,
            principal(hub),
            project,
            dataset,
            columns=column,
            row_filter=row_filter,
            version=version,
            until=until,
            note=note,
        )
    out().print("Requested " + _summary(info) + ".")


@permit_app.command("grant")
def grant(
    ctx: typer.Context,
    permit_id: Annotated[int, typer.Argument(help="The permit's number.")],
    column: Annotated[
        list[str] | None, typer.Option(help="Grant only these columns (repeat).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End earlier than asked, YYYY-MM-DD.")] = None,
    and_filter: Annotated[
        str, typer.Option("--and-filter", help="A further condition on the rows.")
    ] = "",
    note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
) -> None:
    """Grant a requested permit, as asked or narrower."""
    with state(ctx).open_hub() as hub:
        info = decide(
            hub,
            principal(hub),
            permit_id,
            "grant",
            columns=column,
            until=until,
            extra_filter=and_filter,
            note=note,
        )
    out().print("Granted " + _summary(info) + ".")


@permit_app.command("refuse")
def refuse(
    ctx: typer.Context,
    permit_id: Annotated[int, typer.Argument(help="The permit's number.")],
    note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
) -> None:
    """Refuse a requested permit."""
    with state(ctx).open_hub() as hub:
        decide(hub, principal(hub), permit_id, "refuse", note=note)
    out().print(f"Refused permit #{permit_id}.")


@permit_app.command("revoke")
def revoke(
    ctx: typer.Context,
    permit_id: Annotated[int, typer.Argument(help="The permit's number.")],
    note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
) -> None:
    """Revoke a granted permit: it stops giving access at once."""
    with state(ctx).open_hub() as hub:
        decide(hub, principal(hub), permit_id, "revoke", note=note)
    out().print(f"Revoked permit #{permit_id}.")


@permit_app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's permits.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The permits you may see."""
    with state(ctx).open_hub() as hub:
        found = list_permits(hub, principal(hub), project)
    if as_json:
        print_json([p.__dict__ for p in found])
        return
    table = Table()
    for column in ("#", "project", "dataset", "status", "columns", "rows", "until"):
        table.add_column(column)
    for p in found:
        table.add_row(
            str(p.id), p.project, p.dataset, p.status, ", ".join(p.columns),
            p.row_filter or "all", p.valid_until,
        )  # fmt: skip
    out().print(table)
