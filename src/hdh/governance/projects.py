"""Research projects as an audited state machine.

A project is created as a ``draft`` by its lead, ``submitted`` for approval, ``approved``
once its authorisation is recorded (``approval_ref``: an ethics opinion and the data
protection authority's decision), then ``active`` while its members work, and finally
``closed`` and ``archived``; ``rejected`` and ``suspended`` are the other stops.
``TRANSITIONS`` is the whole machine: each status maps every action allowed from it to
the status it leads to; ``hdh.authz`` says who may take each action. A transition and its
audit event are written in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from hdh import audit, authz
from hdh.audit import AuditEvent
from hdh.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from hdh.governance.models import Project, ProjectMember
from hdh.hub import Hub
from hdh.identity.models import User
from hdh.identity.service import Principal

STATUSES = (
    "draft",
    "submitted",
    "approved",
    "active",
    "suspended",
    "closed",
    "archived",
    "rejected",
)
#: status -> {action: next status}. A status with no action out of it is terminal.
TRANSITIONS: dict[str, dict[str, str]] = {
    "draft": {"submit": "submitted"},
    "submitted": {"approve": "approved", "reject": "rejected"},
    "approved": {"activate": "active"},
    "active": {"suspend": "suspended", "close": "closed"},
    "suspended": {"activate": "active", "close": "closed"},
    "closed": {"archive": "archived"},
    "rejected": {"revise": "draft", "archive": "archived"},
    "archived": {},
}
TERMINAL = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")


@dataclass
class ProjectInfo:
    name: str
    title: str
    purpose: str
    legal_basis: str
    approval_ref: str
    lead: str
    status: str
    starts_on: str | None
    ends_on: str | None
    created_at: str
    updated_at: str
    members: dict[str, str]  # user -> project role


def _user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"there is no user named {name!r}", hint="list them with hdh user list")
    return user


def _project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(
            f"there is no project named {name!r}", hint="list them with hdh project list"
        )
    return project


def _members(session: Session, project: Project) -> dict[str, str]:
    rows = session.execute(
        select(User.name, ProjectMember.role)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project.id)
        .order_by(User.name)
    ).all()
    return {str(name): str(role) for name, role in rows}


def _info(session: Session, project: Project) -> ProjectInfo:
    lead = session.get(User, project.lead_id)
    assert lead is not None
    return ProjectInfo(
        project.name,
        project.title,
        project.purpose,
        project.legal_basis,
        project.approval_ref,
        lead.name,
        project.status,
        project.starts_on,
        project.ends_on,
        project.created_at,
        project.updated_at,
        _members(session, project),
    )


def context(session: Session, principal: Principal, project: Project) -> authz.ProjectContext:
    """Where ``principal`` stands in ``project``, for ``authz``."""
    role = None
    if principal.kind == "user":
        role = session.scalar(
            select(ProjectMember.role)
            .join(User, User.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == project.id, User.name == principal.name)
        )
    return authz.ProjectContext(project.name, role)


def check_in_project(hub: Hub, principal: Principal, project: str, action: str) -> str:
    """Raise (audited) unless ``principal`` may take ``action`` in ``project``; return
    the project's status. For the workspace, jobs and the airlock."""
    with hub.read() as session:
        owner = _project(session, project)
        where = context(session, principal, owner)
        status = owner.status
    authz.check(hub, principal, action, where)
    return status


def project_name(session: Session, project_id: int) -> str:
    """The name of the project with this id (records refer to projects by id)."""
    owner = session.get(Project, project_id)
    if owner is None:
        raise NotFound(f"there is no project #{project_id}", hint="see hdh project list")
    return owner.name


def _check_dates(starts_on: str | None, ends_on: str | None) -> None:
    parsed: list[date | None] = []
    for label, value in (("start", starts_on), ("end", ends_on)):
        if value is None:
            parsed.append(None)
            continue
        try:
            parsed.append(date.fromisoformat(value))
        except ValueError:
            raise InvalidInput(
                f"the {label} date {value!r} is not a date", hint="write it as YYYY-MM-DD"
            ) from None
    if parsed[0] and parsed[1] and parsed[1] < parsed[0]:
        raise InvalidInput(
            f"the project ends ({ends_on}) before it starts ({starts_on})",
            hint="check the dates",
        )


def create_project(
    hub: Hub,
    principal: Principal,
    name: str,
    *,
    title: str,
    lead: str | None = None,
    purpose: str = "",
    legal_basis: str = "",
    starts_on: str | None = None,
    ends_on: str | None = None,
) -> ProjectInfo:
    """A new ``draft`` project; its lead (the creator when a user) becomes its lead member."""
    authz.check(hub, principal, "project.create")
    if not PROJECT_NAME.match(name):
        raise InvalidInput(
            f"project name {name!r} is not allowed",
            hint="use 2 to 64 lower-case letters, digits or '-'",
        )
    if not title.strip():
        raise InvalidInput("a project needs a title", hint="give --title")
    _check_dates(starts_on, ends_on)
    lead_name = lead or (principal.name if principal.kind == "user" else None)
    if lead_name is None:
        raise InvalidInput("the project has no lead", hint="give --lead USER")
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        lead_user = _user(session, lead_name)
        if lead_user.disabled:
            raise Conflict(f"user {lead_name!r} is disabled", hint="choose another lead")
        if session.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise Conflict(f"there is already a project named {name!r}", hint="choose another name")
        project = Project(
            name=name,
            title=title,
            purpose=purpose,
            legal_basis=legal_basis,
            approval_ref="",
            lead_id=lead_user.id,
            status="draft",
            starts_on=starts_on,
            ends_on=ends_on,
            created_at=now,
            updated_at=now,
        )
        session.add(project)
        session.flush()
        session.add(
            ProjectMember(project_id=project.id, user_id=lead_user.id, role="lead", added_at=now)
        )
        audit.record(
            session,
            actor=principal.actor,
            action="project.create",
            object_type="project",
            object_id=name,
            details={"lead": lead_name, "title": title},
        )
        session.flush()
        return _info(session, project)


def transition(
    hub: Hub,
    principal: Principal,
    name: str,
    action: str,
    *,
    note: str = "",
    approval_ref: str | None = None,
) -> ProjectInfo:
    """Take ``action`` on project ``name``: refused unless ``TRANSITIONS`` allows it from
    the current status and ``authz`` allows it to ``principal``."""
    if not any(action in moves for moves in TRANSITIONS.values()):
        known = sorted({a for moves in TRANSITIONS.values() for a in moves})
        raise InvalidInput(
            f"{action!r} is not a project action", hint=f"use one of {', '.join(known)}"
        )
    with hub.read() as session:
        project = _project(session, name)
        where = context(session, principal, project)
    authz.check(hub, principal, f"project.{action}", where)
    with hub.transaction() as session:
        project = _project(session, name)
        moves = TRANSITIONS[project.status]
        if action not in moves:
            allowed = ", ".join(moves) or "none: it is final"
            raise Conflict(
                f"project {name!r} is {project.status}: it cannot be {_past(action)}",
                hint=f"from {project.status}, the actions are: {allowed}",
            )
        if action == "approve":
            reference = (approval_ref or "").strip()
            if not reference:
                raise InvalidInput(
                    "approving a project needs the reference of its authorisation",
                    hint='give --approval-ref, e.g. "CNIL DR-2026-123 of 2026-03-02"',
                )
            project.approval_ref = reference
        elif approval_ref:
            raise InvalidInput("--approval-ref is given only when approving", hint="leave it out")
        if action == "activate" and project.starts_on is None:
            project.starts_on = date.today().isoformat()
        before = project.status
        project.status = moves[action]
        project.updated_at = audit.utc_timestamp()
        audit.record(
            session,
            actor=principal.actor,
            action=f"project.{action}",
            object_type="project",
            object_id=name,
            details={
                "from": before,
                "to": project.status,
                **({"note": note} if note else {}),
                **({"approval_ref": project.approval_ref} if action == "approve" else {}),
            },
        )
        return _info(session, project)


def _past(action: str) -> str:
    return {
        "submit": "submitted",
        "approve": "approved",
        "reject": "rejected",
        "activate": "activated",
        "suspend": "suspended",
        "close": "closed",
        "archive": "archived",
        "revise": "revised",
    }[action]


def get_project(hub: Hub, principal: Principal, name: str) -> ProjectInfo:
    with hub.read() as session:
        project = _project(session, name)
        where = context(session, principal, project)
    try:
        authz.check(hub, principal, "project.read", where)
    except PermissionDenied:
        # Audited as denied; answered as if it did not exist, so that names do not leak.
        raise NotFound(
            f"there is no project named {name!r}", hint="list them with hdh project list"
        ) from None
    with hub.read() as session:
        return _info(session, _project(session, name))


def project_history(hub: Hub, principal: Principal, name: str) -> list[AuditEvent]:
    """The project's own life, oldest first: its creation, its moves and its members'
    changes. Refusals about it stay in the audit trail, for those who may read it."""
    get_project(hub, principal, name)  # who may see the project may see its life
    with hub.read() as session:
        return audit.list_events(
            session,
            audit.EventFilter(
                object_type="project", object_id=name, action="project.*", outcome="success"
            ),
            limit=500,
        )


def list_projects(hub: Hub, principal: Principal) -> list[ProjectInfo]:
    """Every project for those who may read them all; otherwise the principal's own."""
    with hub.read() as session:
        projects = session.scalars(select(Project).order_by(Project.name)).all()
        return [
            _info(session, p)
            for p in projects
            if authz.can(principal, "project.read", context(session, principal, p))
        ]


def set_member(
    hub: Hub, principal: Principal, name: str, user: str, role: str | None
) -> ProjectInfo:
    """Add ``user`` to project ``name`` with ``role`` (or change it); ``None`` removes them."""
    if role is not None and role not in authz.PROJECT_ROLES[1:]:
        raise InvalidInput(
            f"{role!r} is not a member role",
            hint="use analyst or viewer (the lead is set when the project is created)",
        )
    with hub.read() as session:
        project = _project(session, name)
        where = context(session, principal, project)
    authz.check(hub, principal, "project.members", where)
    with hub.transaction() as session:
        project = _project(session, name)
        if project.status in TERMINAL or project.status == "closed":
            raise Conflict(
                f"project {name!r} is {project.status}: its members no longer change",
                hint="members change while a project is open",
            )
        member_user = _user(session, user)
        row = session.scalar(
            select(ProjectMember).where(
                ProjectMember.project_id == project.id, ProjectMember.user_id == member_user.id
            )
        )
        if row is not None and row.role == "lead":
            raise Conflict(f"{user!r} is the lead of {name!r}", hint="the lead stays a member")
        if role is None:
            if row is None:
                raise NotFound(f"{user!r} is not a member of {name!r}", hint="nothing to do")
            session.delete(row)
        elif row is None:
            if member_user.disabled:
                raise Conflict(f"user {user!r} is disabled", hint="choose another user")
            session.add(
                ProjectMember(
                    project_id=project.id,
                    user_id=member_user.id,
                    role=role,
                    added_at=audit.utc_timestamp(),
                )
            )
        else:
            row.role = role
        audit.record(
            session,
            actor=principal.actor,
            action="project.member.remove" if role is None else "project.member.add",
            object_type="project",
            object_id=name,
            details={"user": user, **({"role": role} if role else {})},
        )
        session.flush()
        return _info(session, project)


def mermaid() -> str:
    """The state machine as a Mermaid diagram (drawn in docs/reference/project-states.md)."""
    lines = ["stateDiagram-v2", "    [*] --> draft: create"]
    for status, moves in TRANSITIONS.items():
        for action, target in moves.items():
            lines.append(f"    {status} --> {target}: {action}")
    lines += [f"    {status} --> [*]" for status in sorted(TERMINAL)]
    return "\n".join(lines)
