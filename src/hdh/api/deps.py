"""What every ``/api/v1`` route needs: the hub, and who is calling (a bearer token made
with ``hdh token create``; authorisation is then ``hdh.authz``'s, as on the command
line)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from hdh.hub import Hub
from hdh.identity.service import AuthenticationFailed, LocalIdentity, Principal

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="A token from `hdh token create`.")


def hub_of(request: Request) -> Hub:
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
    return LocalIdentity(hub_of(request)).authenticate_token(credentials.credentials)


Who = Annotated[Principal, Depends(current_principal)]


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items`` from ``offset``, at most ``limit`` of them."""

    items: list[T]
    total: int
    offset: int
    limit: int
    #: The ``offset`` of the next page, or null on the last one.
    next_offset: int | None


#: A record's number in a path: positive and within the databases' integers.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
#: A number in a query or a body that is compared in the database.
MAX_INT = 2**63 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="How many items to skip.")]
Limit = Annotated[int, Query(ge=1, le=200, description="How many items at most.")]


def page(every: Sequence[T], offset: int, limit: int) -> Page[T]:
    following = offset + limit if offset + limit < len(every) else None
    return Page(
        items=list(every[offset : offset + limit]), total=len(every), offset=offset,
        limit=limit, next_offset=following,
    )  # fmt: skip
