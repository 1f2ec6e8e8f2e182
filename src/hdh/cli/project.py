"""``hdh project create|list|show|submit|approve|reject|activate|suspend|close|archive|revise``
and ``hdh project member add|remove``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh.cli import app, out, principal, print_json, state
from hdh.governance.projects import (
    ProjectInfo,
    create_project,
    get_project,
    list_projects,
    set_member,
    transition,
)

project_app = typer.Typer(
    help="Research projects: from draft to approval, activity, closure.", no_args_is_help=True
)
member_app = typer.Typer(help="A project's members.", no_args_is_help=True)
app.add_typer(project_app, name="project")
project_app.add_typer(member_app, name="member")


def _print(info: ProjectInfo) -> None:
    console = out()
    console.print(f"{info.name}: {info.title} ({info.status})")
    console.print(f"  lead: {info.lead}")
    for label, value in (
        ("purpose", info.purpose),
        ("legal basis", info.legal_basis),
        ("approval", info.approval_ref),
        ("starts", info.starts_on),
        ("ends", info.ends_on),
    ):
        if value:
            console.print(f"  {label}: {value}")
    members = ", ".join(f"{user} ({role})" for user, role in info.members.items())
    console.print(f"  members: {members}")


@project_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A short name (lower case, digits, '-').")],
    title: Annotated[str, typer.Option(help="The project's title.")],
    lead: Annotated[
        str | None, typer.Option(help="Its lead (default: you, when signed in with a token).")
    ] = None,
    purpose: Annotated[str, typer.Option(help="What the research is for.")] = "",
    legal_basis: Annotated[str, typer.Option(help="The legal basis of the processing.")] = "",
    starts_on: Annotated[str | None, typer.Option(help="Start date, YYYY-MM-DD.")] = None,
    ends_on: Annotated[str | None, typer.Option(help="End date, YYYY-MM-DD.")] = None,
) -> None:
    """Create a project as a draft."""
    with state(ctx).open_hub() as hub:
        info = create_project(
            hub,
            principal(hub),
            name,
            title=title,
            lead=lead,
            purpose=purpose,
            legal_basis=legal_basis,
            starts_on=starts_on,
            ends_on=ends_on,
        )
    out().print(f"Created project {info.name!r} (draft), led by {info.lead}.")


@project_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The projects you may see (all of them for administrators and auditors)."""
    with state(ctx).open_hub() as hub:
        found = list_projects(hub, principal(hub))
    if as_json:
        print_json([p.__dict__ for p in found])
        return
    table = Table()
    for column in ("project", "status", "lead", "members", "title"):
        table.add_column(column)
    for p in found:
        table.add_row(p.name, p.status, p.lead, str(len(p.members)), p.title)
    out().print(table)


@project_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A project: status, lead, authorisation, dates and members."""
    with state(ctx).open_hub() as hub:
        info = get_project(hub, principal(hub), name)
    if as_json:
        print_json(info.__dict__)
        return
    _print(info)


def _move(action: str, doc: str) -> None:
    def command(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="The project.")],
        note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    ) -> None:
        with state(ctx).open_hub() as hub:
            info = transition(hub, principal(hub), name, action, note=note)
        out().print(f"Project {name!r} is now {info.status}.")

    command.__doc__ = doc
    project_app.command(action)(command)


@project_app.command("approve")
def approve(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project.")],
    approval_ref: Annotated[
        str,
        typer.Option(help='The authorisation it rests on, e.g. "CNIL DR-2026-123 of 2026-03-02".'),
    ],
    note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
) -> None:
    """Approve a submitted project, recording the authorisation it rests on."""
    with state(ctx).open_hub() as hub:
        info = transition(
            hub, principal(hub), name, "approve", note=note, approval_ref=approval_ref
        )
    out().print(f"Project {name!r} is now {info.status} ({info.approval_ref}).")


for _action, _doc in (
    ("submit", "Submit a draft project for approval (its lead)."),
    ("reject", "Reject a submitted project."),
    ("activate", "Open an approved (or suspended) project: its members may work."),
    ("suspend", "Suspend an active project."),
    ("close", "Close an active or suspended project."),
    ("archive", "Archive a closed or rejected project."),
    ("revise", "Take a rejected project back to draft (its lead)."),
):
    _move(_action, _doc)


@member_app.command("add")
def member_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project.")],
    user: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str, typer.Option(help="analyst or viewer.")] = "analyst",
) -> None:
    """Add a member to a project (or change their role)."""
    with state(ctx).open_hub() as hub:
        set_member(hub, principal(hub), name, user, role)
    out().print(f"{user!r} is a member of {name!r} ({role}).")


@member_app.command("remove")
def member_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project.")],
    user: Annotated[str, typer.Argument(help="The user.")],
) -> None:
    """Remove a member from a project."""
    with state(ctx).open_hub() as hub:
        set_member(hub, principal(hub), name, user, None)
    out().print(f"{user!r} is no longer a member of {name!r}.")
