"""``hdh audit verify`` and ``hdh audit log``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh import audit
from hdh.cli import acting, app, out, print_json, state
from hdh.errors import AuditChainBroken

audit_app = typer.Typer(help="Read and verify the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recompute the hash chain and compare its end with the head witness.

    Exits 0 when intact; otherwise exits 8 naming the first bad event.
    """
    with state(ctx).open_hub() as hub, hub.snapshot() as session:
        acting(hub, "audit.read")
        report = audit.verify_chain(session, hub.witness)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "events": report.events,
                "head": {"seq": report.head.seq, "hash": report.head.hash} if report.head else None,
                "problem": (
                    {
                        "seq": report.problem.seq,
                        "kind": report.problem.kind,
                        "message": report.problem.message,
                    }
                    if report.problem
                    else None
                ),
            }
        )
        if not report.ok:
            raise typer.Exit(AuditChainBroken.exit_code)
        return
    if report.problem is not None:
        raise AuditChainBroken(
            f"audit chain broken at event #{report.problem.seq}: {report.problem.message}",
            hint="keep the database and the hub folder as they are and investigate "
            "(docs/explanation/audit-log.md)",
        )
    head = f"#{report.head.seq} {report.head.hash}" if report.head else "empty"
    plural = "" if report.events == 1 else "s"
    out().print(f"Audit chain intact: {report.events} event{plural}, head {head}.")


@audit_app.command("log")
def log_events(
    ctx: typer.Context,
    actor: Annotated[str | None, typer.Option(help="Only events by this actor.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action; end with * for a prefix (hub.*).")
    ] = None,
    object_: Annotated[
        str | None, typer.Option("--object", help="Only events on TYPE or TYPE:ID.")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Only events with this outcome: success, failure, denied.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (UTC), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date/time (UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many events.")] = 50,
    before: Annotated[
        int | None, typer.Option(help="Only events numbered below this (to page back).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List audit events, latest last."""
    filters = audit.EventFilter.parse(
        actor=actor, action=action, object_=object_, outcome=outcome, since=since,
        until=until, prefix="--",
    )  # fmt: skip
    with state(ctx).open_hub() as hub, hub.read() as session:
        acting(hub, "audit.read")
        events = audit.list_events(session, filters, limit=limit, before_seq=before)
    if as_json:
        print_json([audit.event_record(e) for e in events])
        return
    if not events:
        out().print("No events match.")
        return
    table = Table()
    for column in ("#", "when (UTC)", "actor", "action", "object", "outcome", "details"):
        table.add_column(column)
    for e in events:
        table.add_row(
            str(e.seq),
            e.occurred_at[:19].replace("T", " "),
            e.actor,
            e.action,
            f"{e.object_type}:{e.object_id}",
            e.outcome,
            e.details if e.details != "{}" else "",
        )
    out().print(table)
