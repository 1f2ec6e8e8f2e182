"""What every ``/api/v1`` route needs: the hub, and who is calling (a bearer token made
with ``hdh token create``; authorisation is then ``hdh.authz``'s, as on the command
line)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hdh import authz
from hdh.api.cache import ChangeClock, KnownTokens, ReadCache
from hdh.hub import Hub
from hdh.identity.service import AuthenticationFailed, LocalIdentity, Principal

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="A token from `hdh token create`.")


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def change_number(request: Request) -> int:
    """The hub's change number, read once per request after it arrived (``hdh.api.cache``)."""
    number: int | None = getattr(request.state, "change_number", None)
    if number is None:
        clock: ChangeClock = request.app.state.change_clock
        number = request.state.change_number = await clock.now()
    return number


async def kept_answer(request: Request, key: Hashable, make: Callable[[], bytes]) -> bytes:
    """The answer kept for ``key`` if nothing changed since it was made, sent without
    leaving the event loop; else made by ``make`` in a worker thread and kept."""
    cache: ReadCache = request.app.state.read_cache
    number = await change_number(request)
    kept = cache.kept(key, number)
    if kept is None:
        kept = await run_in_threadpool(cache.answer, hub_of(request), key, make, number)
    return kept


async def token_holder(request: Request, token: str) -> Principal:
    """Who holds ``token``: known already if nothing changed since it was last checked,
    else checked in the database (which records a failure)."""
    known: KnownTokens = request.app.state.known_tokens
    number = await change_number(request)
    if (who := known.get(token, number)) is not None:
        return who
    check = await run_in_threadpool(LocalIdentity(hub_of(request)).check_token, token)
    known.put(token, number, check)
    return check.principal


async def authorise(hub: Hub, who: Principal, action: str) -> None:
    """``authz.check`` for a route on the event loop: a refusal, which is recorded, is
    made in a worker thread."""
    if not authz.can(who, action, None):
        await run_in_threadpool(authz.check, hub, who, action)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed(
            "this request has no bearer token",
            hint="send Authorization: Bearer TOKEN (make one with hdh token create)",
        )
    return await token_holder(request, credentials.credentials)


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
