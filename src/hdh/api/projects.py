"""``/api/v1``: who am I, research projects and their data permits. Every route needs a bearer token
(``Authorization: Bearer hdh_…``, made with ``hdh token create``); authorisation is
``hdh.authz``'s, as on the command line."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from hdh.api.deps import MAX_INT, Id, Limit, Offset, Page, Who, hub_of, page
from hdh.governance.permits import PermitInfo, decide, list_permits, request_permit
from hdh.governance.projects import (
    ProjectInfo,
    create_project,
    get_project,
    list_projects,
    set_member,
    transition,
)

router = APIRouter(prefix="/api/v1")


class Me(BaseModel):
    name: str
    roles: list[str]


class NewProject(BaseModel):
    name: str = Field(min_length=2, max_length=64)
    title: str = Field(min_length=1, max_length=300)
    purpose: str = ""
    legal_basis: str = ""
    starts_on: str | None = None
    ends_on: str | None = None


class Move(BaseModel):
    action: Literal[
        "submit", "approve", "reject", "activate", "suspend", "close", "archive", "revise"
    ]
    note: str = ""
    approval_ref: str | None = None


@router.get("/me", response_model=Me, tags=["people"])
def me(who: Who) -> Me:
    """The account the token belongs to, and its roles."""
    return Me(name=who.name, roles=sorted(who.roles))


@router.get("/projects", response_model=Page[ProjectInfo], tags=["projects"])
def projects(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    """The projects the caller may see, a page at a time."""
    return page(list_projects(hub_of(request), who), offset, limit)


@router.post("/projects", response_model=ProjectInfo, status_code=201, tags=["projects"])
def new_project(request: Request, who: Who, body: NewProject) -> ProjectInfo:
    """Create a draft project led by the caller."""
    return create_project(
        hub_of(request),
        who,
        body.name,
        title=body.title,
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        starts_on=body.starts_on,
        ends_on=body.ends_on,
    )


@router.get("/projects/{name}", response_model=ProjectInfo, tags=["projects"])
def project(request: Request, who: Who, name: str) -> ProjectInfo:
    """One project."""
    return get_project(hub_of(request), who, name)


@router.post("/projects/{name}/transitions", response_model=ProjectInfo, tags=["projects"])
def move(request: Request, who: Who, name: str, body: Move) -> ProjectInfo:
    """Move a project along its life cycle (see docs/reference/project-states.md)."""
    return transition(
        hub_of(request), who, name, body.action, note=body.note, approval_ref=body.approval_ref
    )


class Member(BaseModel):
    role: Literal["analyst", "viewer"]


@router.put("/projects/{name}/members/{user}", response_model=ProjectInfo, tags=["projects"])
def add_member(request: Request, who: Who, name: str, user: str, body: Member) -> ProjectInfo:
    """Add a member with a role, or change their role (the lead, administrators)."""
    return set_member(hub_of(request), who, name, user, body.role)


@router.delete("/projects/{name}/members/{user}", response_model=ProjectInfo, tags=["projects"])
def remove_member(request: Request, who: Who, name: str, user: str) -> ProjectInfo:
    """Remove a member (the lead, administrators)."""
    return set_member(hub_of(request), who, name, user, None)


class PermitRequest(BaseModel):
    dataset: str
    columns: list[str] = Field(min_length=1)
    row_filter: str = ""
    version: int | None = Field(default=None, ge=1, le=MAX_INT)
    until: str | None = None
    note: str = ""


class PermitDecision(BaseModel):
    action: Literal["grant", "refuse", "revoke"]
    columns: list[str] | None = None
    until: str | None = None
    and_filter: str = ""
    note: str = ""


@router.get("/permits", response_model=Page[PermitInfo], tags=["permits"])
def permits(
    request: Request,
    who: Who,
    project: str | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Any:
    """The permits the caller may see (of one project with ``?project=``), a page at a
    time."""
    return page(list_permits(hub_of(request), who, project), offset, limit)


@router.post(
    "/projects/{name}/permits", response_model=PermitInfo, status_code=201, tags=["permits"]
)
def ask(request: Request, who: Who, name: str, body: PermitRequest) -> PermitInfo:
    """Request a permit for the project (its lead)."""
    return request_permit(
        hub_of(request),
        who,
        name,
        body.dataset,
        columns=body.columns,
        row_filter=body.row_filter,
        version=body.version,
        until=body.until,
        note=body.note,
    )


@router.post("/permits/{permit_id}/decision", response_model=PermitInfo, tags=["permits"])
def decision(request: Request, who: Who, permit_id: Id, body: PermitDecision) -> PermitInfo:
    """Grant (as asked or narrower), refuse, or revoke a permit (administrators)."""
    return decide(
        hub_of(request),
        who,
        permit_id,
        body.action,
        columns=body.columns,
        until=body.until,
        extra_filter=body.and_filter,
        note=body.note,
    )


class QueryIn(BaseModel):
    sql: str = Field(min_length=1, max_length=20_000)
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: int = Field(
        default=0, ge=0, le=MAX_INT, description="The first row of the page (from 0)."
    )


class QueryOut(BaseModel):
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null at the end.")
    datasets: list[str]
    seconds: float


@router.post("/projects/{name}/query", response_model=QueryOut, tags=["workspace"])
def query(request: Request, who: Who, name: str, body: QueryIn) -> QueryOut:
    """SQL on the project's permitted data (see docs/how-to/query-project-data.md)."""
    from hdh.workspace.governed import run_query

    hub = hub_of(request)
    result = run_query(hub, who, name, body.sql, max_rows=body.limit, offset=body.offset)
    rows = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in result.table.to_pylist()
    ]
    return QueryOut(
        columns=result.table.column_names,
        rows=rows,
        truncated=result.truncated,
        offset=body.offset,
        next_offset=body.offset + len(rows) if result.truncated else None,
        datasets=result.datasets,
        seconds=round(result.seconds, 3),
    )
