"""``/api/v1``: running the hub, as ``hdh user``, ``hdh token``, ``hdh location list``
and ``hdh policy show`` do it: accounts (``user.manage``), tokens (one's own, or any
with ``user.manage``), locations with their jurisdiction and exposure, and what the
residency policy allows where (``hub.operate``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from hdh import authz, policy
from hdh.api.deps import Limit, Offset, Page, Who, hub_of, page
from hdh.api.signin import sign_in
from hdh.errors import NotFound
from hdh.identity import service as identity
from hdh.storage.locations import describe_location, list_locations

router = APIRouter(prefix="/api/v1")


class NewUser(BaseModel):
    name: str = Field(min_length=2, max_length=64)
    roles: list[str] = Field(min_length=1)
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=200)
    #: Optional: without one, the account signs in with tokens only.
    password: str | None = Field(default=None, max_length=1000)


class Roles(BaseModel):
    roles: list[str] = Field(min_length=1)


class NewPassword(BaseModel):
    password: str = Field(min_length=1, max_length=1000)


@router.put("/users/{name}/password", status_code=204, tags=["people"])
def set_password(request: Request, who: Who, name: str, body: NewPassword) -> Response:
    """Set a password (one's own, or anyone's with ``user.manage``); held to the
    password policy (422 says why not)."""
    hub = hub_of(request)
    authz.check_own_or_manage(hub, who, name)
    identity.set_password(hub, name, body.password, actor=who.actor)
    return Response(status_code=204)


class NewToken(BaseModel):
    #: Whose token (default: the caller's own).
    user: str | None = None
    days: int = Field(default=30, ge=1, le=identity.MAX_TOKEN_DAYS)
    label: str = Field(default="", max_length=200)


class CreatedToken(BaseModel):
    #: The token itself: shown only in this answer.
    token: str
    info: identity.TokenInfo


class LocationOut(BaseModel):
    name: str
    kind: str
    uri: str
    provider: str
    region: str | None
    country: str
    certifications: list[str]
    #: Laws outside the EU that reach the provider (e.g. the US CLOUD Act).
    extraterritorial: list[str]
    endpoint: str | None
    preset: str | None
    #: How credentials are given (never their value).
    credentials: str


class PolicyOut(BaseModel):
    rules: list[dict[str, Any]]
    #: For each location and data class: allowed, and the reasons when not.
    placements: list[dict[str, Any]]


@router.get("/users", response_model=Page[identity.UserInfo], tags=["people"])
def users(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    hub = hub_of(request)
    authz.check(hub, who, "user.manage")
    return page(identity.list_users(hub), offset, limit)


@router.post("/users", response_model=identity.UserInfo, status_code=201, tags=["people"])
def add_user(request: Request, who: Who, body: NewUser) -> identity.UserInfo:
    """Add an account (the password, if any, is held to the hub's policy)."""
    hub = hub_of(request)
    authz.check(hub, who, "user.manage")
    return identity.add_user(
        hub, body.name, roles=body.roles, actor=who.actor, display_name=body.display_name,
        email=body.email, password=body.password,
    )  # fmt: skip


@router.post("/users/{name}/disable", response_model=identity.UserInfo, tags=["people"])
def disable_user(request: Request, who: Who, name: str) -> identity.UserInfo:
    """Its password and tokens stop working at once."""
    hub = hub_of(request)
    authz.check(hub, who, "user.manage")
    return identity.disable_user(hub, name, actor=who.actor)


@router.post("/users/{name}/enable", response_model=identity.UserInfo, tags=["people"])
def enable_user(request: Request, who: Who, name: str) -> identity.UserInfo:
    hub = hub_of(request)
    authz.check(hub, who, "user.manage")
    return identity.enable_user(hub, name, actor=who.actor)


@router.put("/users/{name}/roles", response_model=identity.UserInfo, tags=["people"])
def set_roles(request: Request, who: Who, name: str, body: Roles) -> identity.UserInfo:
    hub = hub_of(request)
    authz.check(hub, who, "user.manage")
    return identity.set_roles(hub, name, body.roles, actor=who.actor)


@router.get("/tokens", response_model=Page[identity.TokenInfo], tags=["people"])
def tokens(
    request: Request, who: Who, user: str | None = None, offset: Offset = 0, limit: Limit = 50
) -> Any:
    """Tokens (never their secret): one's own, or anyone's with ``user.manage``."""
    hub = hub_of(request)
    authz.check_own_or_manage(hub, who, user or who.name)
    return page(identity.list_tokens(hub, user or who.name), offset, limit)


@router.post("/tokens", response_model=CreatedToken, status_code=201, tags=["people"])
def create_token(request: Request, who: Who, body: NewToken) -> CreatedToken:
    """A new token, shown only in this answer."""
    hub = hub_of(request)
    owner = body.user or who.name
    authz.check_own_or_manage(hub, who, owner)
    token, info = identity.create_token(
        hub, owner, actor=who.actor, days=body.days, label=body.label
    )
    return CreatedToken(token=token, info=info)


class SignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Too many failed sign-ins for this name or from this address lately; "
        "the Retry-After header says how many seconds to wait.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
}


@router.post(
    "/login", response_model=CreatedToken, status_code=201, tags=["people"], responses=_LIMITED
)
def login(request: Request, body: SignIn) -> CreatedToken:
    """Sign in with a name and a password: a token of one day (label ``sign-in``).
    Repeated failures are refused for a while (HTTP 429)."""
    client = request.client.host if request.client else "unknown"
    token, info = sign_in(hub_of(request), request.app.state.login_limiter, body.name,
                          body.password, client=client)  # fmt: skip
    return CreatedToken(token=token, info=info)


@router.post("/tokens/{token_id}/revoke", response_model=identity.TokenInfo, tags=["people"])
def revoke_token(request: Request, who: Who, token_id: str) -> identity.TokenInfo:
    """It stops working at once."""
    hub = hub_of(request)
    owner = next((t.user for t in identity.list_tokens(hub) if t.id == token_id), None)
    if owner is None:
        raise NotFound(f"there is no token {token_id!r}", hint="list them with GET /tokens")
    authz.check_own_or_manage(hub, who, owner)
    return identity.revoke_token(hub, token_id, actor=who.actor)


@router.get("/locations", response_model=Page[LocationOut], tags=["locations"])
def locations(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    """Where the hub stores data: jurisdiction, certifications, exposure."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    with hub.read() as session:
        every = [LocationOut(**describe_location(loc)) for loc in list_locations(session)]
    return page(every, offset, limit)


@router.get("/policy", response_model=PolicyOut, tags=["locations"])
def residency_policy(request: Request, who: Who) -> PolicyOut:
    """The residency rules, and for each location and data class whether placement is
    allowed and why not."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    with hub.read() as session:
        return PolicyOut(
            rules=[policy.describe_rule(r) for r in policy.list_rules(session)],
            placements=policy.placement_table(session),
        )
