"""``/api/v1``: who am I, and research projects. Every route needs a bearer token
(``Authorization: Bearer hdh_…``, made with ``hdh token create``); authorisation is
``hdh.authz``'s, as on the command line."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from hdh.governance.projects import (
    ProjectInfo,
    create_project,
    get_project,
    list_projects,
    transition,
)
from hdh.hub import Hub
from hdh.identity.service import AuthenticationFailed, LocalIdentity, Principal

bearer = HTTPBearer(auto_error=False, description="A token from `hdh token create`.")
router = APIRouter(prefix="/api/v1")


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed(
            "this request has no bearer token",
            hint="send Authorization: Bearer TOKEN (make one with hdh token create)",
        )
    return LocalIdentity(_hub(request)).authenticate_token(credentials.credentials)


Who = Annotated[Principal, Depends(current_principal)]


class Me(BaseModel):
    name: str
    roles: list[str]


class Project(BaseModel):
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
    members: dict[str, str]

    @classmethod
    def of(cls, info: ProjectInfo) -> Project:
        return cls(**info.__dict__)


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


@router.get("/projects", response_model=list[Project], tags=["projects"])
def projects(request: Request, who: Who) -> list[Project]:
    """The projects the caller may see."""
    return [Project.of(p) for p in list_projects(_hub(request), who)]


@router.post("/projects", response_model=Project, status_code=201, tags=["projects"])
def new_project(request: Request, who: Who, body: NewProject) -> Project:
    """Create a draft project led by the caller."""
    return Project.of(
        create_project(
            _hub(request),
            who,
            body.name,
            title=body.title,
            purpose=body.purpose,
            legal_basis=body.legal_basis,
            starts_on=body.starts_on,
            ends_on=body.ends_on,
        )
    )


@router.get("/projects/{name}", response_model=Project, tags=["projects"])
def project(request: Request, who: Who, name: str) -> Project:
    """One project."""
    return Project.of(get_project(_hub(request), who, name))


@router.post("/projects/{name}/transitions", response_model=Project, tags=["projects"])
def move(request: Request, who: Who, name: str, body: Move) -> Project:
    """Move a project along its life cycle (see docs/reference/project-states.md)."""
    return Project.of(
        transition(
            _hub(request), who, name, body.action, note=body.note, approval_ref=body.approval_ref
        )
    )
