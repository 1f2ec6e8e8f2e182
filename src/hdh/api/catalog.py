"""``/api/v1``: the catalogue (datasets, their versions, schema and suppressed column
profiles, search) for anyone with ``catalog.read``, and the audit trail (events, chain
verification) for ``audit.read``, as ``hdh dataset list|versions|show``, ``hdh catalog
search`` and ``hdh audit log|verify`` give them. No row of data is answered here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from hdh import audit, authz
from hdh.api.deps import MAX_INT, Limit, Offset, Page, Who, authorise, hub_of, kept_answer, page
from hdh.catalog.service import get_metadata, search
from hdh.identity.service import Principal
from hdh.ingest.service import VersionInfo, list_datasets, version_info, versions

router = APIRouter(prefix="/api/v1")


class DatasetSummary(BaseModel):
    name: str
    latest_version: int | None
    versions: int
    description: str


class VersionSummary(BaseModel):
    number: int
    rows: int
    source_name: str
    source_sha256: str
    location: str
    created_at: str
    #: Per-column rule applied at the door (keep, drop, pseudonymise, …).
    rules: dict[str, str]


class Column(BaseModel):
    name: str
    type: str
    rule: str
    #: Counts under the hub's small-count threshold are suppressed (null).
    profile: dict[str, Any] | None


class DatasetOut(BaseModel):
    name: str
    metadata: dict[str, Any]
    version: VersionSummary
    columns: list[Column]


class HitOut(BaseModel):
    #: dataset, table schema or nomenclature
    kind: str
    name: str
    title: str
    matched: list[str]
    score: int


class Event(BaseModel):
    seq: int
    occurred_at: str
    actor: str
    action: str
    object_type: str
    object_id: str
    #: success, failure or denied
    outcome: str
    details: dict[str, Any]
    hash: str


class EventPage(BaseModel):
    items: list[Event]
    limit: int
    #: Pass as ``before`` to get the page of earlier events; null at the first event.
    next_before: int | None


class ChainReport(BaseModel):
    ok: bool
    events: int
    head: dict[str, Any] | None
    problem: dict[str, Any] | None


def _summary(v: VersionInfo) -> VersionSummary:
    return VersionSummary(
        number=v.number, rows=v.rows, source_name=v.source_name, source_sha256=v.source_sha256,
        location=v.location, created_at=v.created_at, rules=dict(v.manifest.get("rules", {})),
    )  # fmt: skip


async def _kept(
    request: Request, who: Principal, key: tuple[Any, ...], make: Callable[[], BaseModel]
) -> Response:
    """The answer ``make`` gives to anyone who may read the catalogue, kept until the hub
    next changes (``hdh.api.cache``)."""
    await authorise(hub_of(request), who, "catalog.read")
    body = await kept_answer(request, key, lambda: make().model_dump_json().encode())
    return Response(body, media_type="application/json")


@router.get("/datasets", response_model=Page[DatasetSummary], tags=["catalogue"])
async def datasets(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    """The datasets and their latest version."""
    hub = hub_of(request)

    def make() -> BaseModel:
        every = [
            DatasetSummary(
                name=d["name"],
                latest_version=d["latest_version"],
                versions=d["versions"],
                description=d["description"] or "",
            )
            for d in list_datasets(hub)
        ]
        return page(every, offset, limit)

    return await _kept(request, who, ("datasets", offset, limit), make)


@router.get("/datasets/{name}", response_model=DatasetOut, tags=["catalogue"])
async def dataset(
    request: Request,
    who: Who,
    name: str,
    version: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> Response:
    """A dataset's description, and a version's (default: the latest) schema, rules and
    column profiles."""
    hub = hub_of(request)

    def make() -> BaseModel:
        chosen = version_info(hub, name, version)
        profiles = {c["name"]: c for c in chosen.manifest.get("profile", {}).get("columns", [])}
        rules = chosen.manifest.get("rules", {})
        columns = [
            Column(
                name=c["name"],
                type=c["type"],
                rule=rules.get(c["name"], "keep"),
                profile=profiles.get(c["name"]),
            )
            for c in chosen.manifest["schema"]
        ]
        return DatasetOut(
            name=name, metadata=get_metadata(hub, name), version=_summary(chosen), columns=columns
        )

    return await _kept(request, who, ("dataset", name, version), make)


@router.get("/datasets/{name}/versions", response_model=Page[VersionSummary], tags=["catalogue"])
def dataset_versions(
    request: Request, who: Who, name: str, offset: Offset = 0, limit: Limit = 50
) -> Any:
    """Every version of a dataset, oldest first."""
    hub = hub_of(request)
    authz.check(hub, who, "catalog.read")
    return page([_summary(v) for v in versions(hub, name)], offset, limit)


@router.get("/catalog/search", response_model=Page[HitOut], tags=["catalogue"])
async def catalog_search(
    request: Request,
    who: Who,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Words to find.")],
    offset: Offset = 0,
    limit: Limit = 50,
) -> Any:
    """Datasets and schemas matching every word, best first (names, descriptions,
    variables, nomenclatures; accents and case ignored)."""
    hub = hub_of(request)

    def make() -> BaseModel:
        hits = [
            HitOut(kind=h.kind, name=h.name, title=h.title, matched=list(h.matched),
                   score=h.score)
            for h in search(hub, q, limit=offset + limit + 1)
        ]  # fmt: skip
        return page(hits, offset, limit)

    return await _kept(request, who, ("search", q, offset, limit), make)


@router.get("/audit/events", response_model=EventPage, tags=["audit"])
def audit_events(
    request: Request,
    who: Who,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="End with * for a prefix.")] = None,
    object: Annotated[str | None, Query(description="TYPE or TYPE:ID.")] = None,
    outcome: Annotated[str | None, Query(description="success, failure or denied")] = None,
    since: Annotated[str | None, Query(description="Date or time (UTC), inclusive.")] = None,
    until: Annotated[str | None, Query(description="Date or time (UTC), exclusive.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="Only events numbered below.")
    ] = None,
) -> EventPage:
    """Audit events, latest last, a page at a time going back (``before``)."""
    hub = hub_of(request)
    authz.check(hub, who, "audit.read")
    filters = audit.EventFilter.parse(
        actor=actor, action=action, object_=object, outcome=outcome, since=since, until=until
    )
    with hub.read() as session:
        found = audit.list_events(session, filters, limit=limit, before_seq=before)
    items = [Event(**audit.event_record(e)) for e in found]
    earliest = min((e.seq for e in items), default=None)
    following = earliest if len(items) == limit and earliest is not None and earliest > 1 else None
    return EventPage(items=items, limit=limit, next_before=following)


@router.post("/audit/verify", response_model=ChainReport, tags=["audit"])
def audit_verify(request: Request, who: Who) -> ChainReport:
    """Recompute the hash chain and compare its end with the head witness: ``ok`` false
    names the first bad event."""
    hub = hub_of(request)
    authz.check(hub, who, "audit.read")
    with hub.snapshot() as session:
        report = audit.verify_chain(session, hub.witness)
    return ChainReport(
        ok=report.ok,
        events=report.events,
        head={"seq": report.head.seq, "hash": report.head.hash} if report.head else None,
        problem=(
            {"seq": report.problem.seq, "kind": report.problem.kind,
             "message": report.problem.message}
            if report.problem else None
        ),
    )  # fmt: skip
