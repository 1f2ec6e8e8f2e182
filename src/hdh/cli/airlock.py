"""``hdh airlock request|list|show|review|download``: results out of a project, checked."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hdh.cli import app, out, principal, print_json, state
from hdh.errors import InvalidInput

if TYPE_CHECKING:
    from hdh.airlock.service import RequestInfo

airlock_app = typer.Typer(
    help="The airlock: export results from a project, checked and reviewed.",
    no_args_is_help=True,
)
app.add_typer(airlock_app, name="airlock")


def _show(request: RequestInfo) -> None:
    out().print(f"Export request {request.id} of project {request.project}: {request.status}")
    out().print(f"  by {request.requested_by} at {request.requested_at}")
    if request.note:
        out().print(f"  note: {request.note}")
    table = Table("file", "kind", "bytes", "verdict", "checks")
    for f in request.files:
        report = f.report
        if "residual_dof" in report:
            checks = (
                f"residual degrees of freedom {report['residual_dof']:g} (>= {report['threshold']})"
            )
        elif "failed" in report:
            checks = f"{report['failed']} cell(s) fail, {report['suppressed']} hidden"
            if report.get("differencing"):
                checks += f"; differencing: {len(report['differencing'])} cell(s)"
        else:
            checks = report.get("note", "")
        table.add_row(f.name, f.kind, str(f.size), f.verdict, checks)
    out().print(table)
    for r in request.reviews:
        out().print(f"  {r['at']} {r['reviewer']}: {r['decision']} {r['comment']}")
    if request.released_at:
        out().print(f"  released at {request.released_at}")


@airlock_app.command("request")
def request(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project.")],
    files: Annotated[list[str], typer.Argument(help="Job outputs to export, as JOB/NAME.")],
    note: Annotated[str, typer.Option(help="What the files are, for the reviewers.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ask to export job outputs: refused at once when a file cannot leave (identifiers,
    row-level data, a type that can hide data…), else checked cell by cell."""
    from hdh.airlock.service import request_export

    with state(ctx).open_hub() as hub:
        found = request_export(hub, principal(hub), project, files, note=note)
    if as_json:
        print_json(asdict(found))
    else:
        _show(found)


@airlock_app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's.")] = None,
    status: Annotated[str | None, typer.Option(help="Only requests in this state.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Export requests you may see, oldest first."""
    from hdh.airlock.service import list_requests

    with state(ctx).open_hub() as hub:
        found = list_requests(hub, principal(hub), project=project, status=status)
    if as_json:
        print_json([asdict(r) for r in found])
        return
    table = Table("id", "project", "status", "by", "files", "at")
    for r in found:
        table.add_row(
            str(r.id), r.project, r.status, r.requested_by, str(len(r.files)), r.requested_at
        )
    out().print(table)


@airlock_app.command("show")
def show(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The export request.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with every cell).")] = False,
    file: Annotated[
        str | None, typer.Option(help="Print this file of the request, as it was asked for.")
    ] = None,
) -> None:
    """A request: its files, the checks' findings, reviews and release record."""
    import sys

    from hdh.airlock.service import read_file, show_request

    with state(ctx).open_hub() as hub:
        if file is not None:
            sys.stdout.buffer.write(read_file(hub, principal(hub), request_id, file))
            return
        found = show_request(hub, principal(hub), request_id)
    if as_json:
        print_json(asdict(found))
    else:
        _show(found)


@airlock_app.command("review")
def review_(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The export request.")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve it.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject it.")] = False,
    return_: Annotated[bool, typer.Option("--return", help="Send it back for changes.")] = False,
    comment: Annotated[str, typer.Option(help="Why (needed to reject or return).")] = "",
    file_comment: Annotated[
        list[str] | None, typer.Option(help="NAME=TEXT: a comment on one file (repeat).")
    ] = None,
) -> None:
    """Decide on a checked request (reviewers other than the requester). On the last
    approval needed, the files are released."""
    from hdh.airlock.service import review

    chosen = [d for d, on in (("approve", approve), ("reject", reject), ("return", return_)) if on]
    if len(chosen) != 1:
        raise InvalidInput(
            "give exactly one of --approve, --reject, --return", hint="say what you decide"
        )
    comments = {}
    for item in file_comment or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--file-comment {item!r} is not NAME=TEXT", hint="e.g. a.csv=ok")
        comments[name] = text
    with state(ctx).open_hub() as hub:
        found = review(
            hub, principal(hub), request_id, chosen[0], comment=comment, file_comments=comments
        )
    _show(found)


@airlock_app.command("download")
def download_(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The released export request.")],
    to: Annotated[Path, typer.Option(help="The folder to write the files into.")] = Path(),
) -> None:
    """Write a released request's files (the project's lead). Audited."""
    from hdh.airlock.service import download

    with state(ctx).open_hub() as hub:
        paths = download(hub, principal(hub), request_id, to)
    for path in paths:
        out().print(str(path))
