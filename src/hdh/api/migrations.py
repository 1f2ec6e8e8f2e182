"""``/api/v1/migrations``: the move of the hub between locations, as ``hdh migrate`` does
it, for administrators (``hub.operate``). A run started here copies in a thread of the
server; ``hdh migrate run --worker`` processes can copy alongside it."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from hdh import authz
from hdh.api.deps import Id, Limit, Offset, Page, Who, hub_of, page
from hdh.errors import Conflict, IntegrityError
from hdh.migrate import report as reports
from hdh.migrate import service

log = logging.getLogger("hdh.api")
router = APIRouter(prefix="/api/v1/migrations", tags=["migrations"])


class NewMigration(BaseModel):
    source: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=64)
    #: Give the copies new keys (decrypted and encrypted again on the way).
    rekey: bool = False


class RunRequest(BaseModel):
    wave: int | None = Field(default=None, ge=1, le=10**6)
    concurrency: int | None = Field(default=None, ge=1, le=64)


class WaveRequest(BaseModel):
    wave: int | None = Field(default=None, ge=1, le=10**6)


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    missing: list[str]
    wrong_size: list[str]
    wrong_hash: list[str]
    extra: list[str]


class Switched(BaseModel):
    #: Records pointed at the other location, by table (and "delta": changes taken in).
    moved: dict[str, int]


class Decommissioned(BaseModel):
    deleted: int
    kept: int
    #: Data keys of the source copies destroyed (re-keying migrations).
    keys_destroyed: int = 0


class Cancelled(BaseModel):
    copies_left_on_target: int


class CheckedReport(BaseModel):
    #: Whether the summary is unaltered and signed by this hub.
    ok: bool
    summary: dict[str, Any] | None
    #: What is wrong when not.
    problem: str | None


@router.post("/check-report", response_model=CheckedReport)
def check_report(request: Request, who: Who, body: dict[str, Any]) -> CheckedReport:
    """Check a report (its JSON, as ``/report`` gave it): is its summary unaltered and
    signed by this hub (``hdh migrate check-report``)? A report that is not even shaped
    like one is a 422."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    try:
        summary = reports.check_report(body, public_key=reports.hub_public_key(hub))
    except IntegrityError as exc:
        return CheckedReport(ok=False, summary=None, problem=str(exc))
    return CheckedReport(ok=True, summary=summary, problem=None)


@router.get("", response_model=Page[service.MigrationInfo])
def migrations(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    """Every migration, oldest first."""
    every = service.list_migrations(hub_of(request), who)
    return page(every, offset, limit)


@router.post("", response_model=service.MigrationInfo, status_code=201)
def plan(request: Request, who: Who, body: NewMigration) -> service.MigrationInfo:
    """Plan the move of everything on ``source`` to ``target``, checked against the
    residency policy (403 ``placement_refused`` where health data may not go); with
    ``rekey``, the copies get new keys."""
    return service.plan_migration(hub_of(request), who, body.source, body.target, rekey=body.rekey)


@router.get("/{migration_id}", response_model=service.MigrationInfo)
def status(request: Request, who: Who, migration_id: Id) -> service.MigrationInfo:
    """Where a migration stands: waves, objects per state, workers copying now."""
    return service.migration_info(hub_of(request), who, migration_id)


def _runs(request: Request) -> dict[int, threading.Thread]:
    if not hasattr(request.app.state, "migration_runs"):
        request.app.state.migration_runs = {}
    runs: dict[int, threading.Thread] = request.app.state.migration_runs
    return runs


@router.post("/{migration_id}/run", response_model=service.MigrationInfo, status_code=202)
def run(request: Request, who: Who, migration_id: Id, body: RunRequest) -> service.MigrationInfo:
    """Start copying in the background (alongside any worker already at it); follow
    it with ``GET /api/v1/migrations/{id}``."""
    hub = hub_of(request)
    info = service.migration_info(hub, who, migration_id)
    if info.status in ("decommissioned", "cancelled"):
        raise Conflict(f"migration {migration_id} is {info.status}", hint="nothing to copy")
    runs = _runs(request)
    if (running := runs.get(migration_id)) is not None and running.is_alive():
        raise Conflict(
            f"migration {migration_id} is already being copied by this server",
            hint="follow it with GET /api/v1/migrations/{id}",
        )

    def copy() -> None:
        try:
            service.run_migration(
                hub, who, migration_id, wave=body.wave, concurrency=body.concurrency, join=True
            )
        except Exception:  # the outcome is in the migration's state and the audit trail
            log.exception("migration %s: the run stopped", migration_id)

    runs[migration_id] = thread = threading.Thread(
        target=copy, name=f"hdh-migration-{migration_id}", daemon=True
    )
    thread.start()
    return service.migration_info(hub, who, migration_id)


@router.post("/{migration_id}/verify", response_model=VerifyOut)
def verify(
    request: Request, who: Who, migration_id: Id, full: Annotated[bool, Query()] = False
) -> VerifyOut:
    """List the target and compare it with the plan (``full``: re-read every byte)."""
    found = service.verify_migration(hub_of(request), who, migration_id, full=full)
    return VerifyOut(ok=found.ok, **asdict(found))


@router.post("/{migration_id}/cutover", response_model=Switched)
def cutover(request: Request, who: Who, migration_id: Id, body: WaveRequest) -> Switched:
    """Copy the delta, then switch the wave (every wave not yet switched, without
    ``wave``) to the target in one transaction."""
    return Switched(moved=service.cutover(hub_of(request), who, migration_id, wave=body.wave))


@router.post("/{migration_id}/rollback", response_model=Switched)
def rollback(request: Request, who: Who, migration_id: Id, body: WaveRequest) -> Switched:
    """Switch a wave (every switched wave, without ``wave``) back to the source."""
    return Switched(moved=service.rollback(hub_of(request), who, migration_id, wave=body.wave))


@router.post("/{migration_id}/cancel", response_model=Cancelled)
def cancel(request: Request, who: Who, migration_id: Id) -> Cancelled:
    """Abandon a migration with no wave cut over."""
    return Cancelled(copies_left_on_target=service.cancel(hub_of(request), who, migration_id))


@router.post("/{migration_id}/decommission", response_model=Decommissioned)
def decommission(request: Request, who: Who, migration_id: Id) -> Decommissioned:
    """Delete the source copies, after the grace period and a verification."""
    return Decommissioned(**service.decommission(hub_of(request), who, migration_id))


@router.get("/{migration_id}/report", response_model=dict[str, Any])
def report(
    request: Request, who: Who, migration_id: Id, full: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    """The report (the JSON ``hdh migrate report`` writes), with its signed summary."""
    return reports.migration_report(hub_of(request), who, migration_id, full=full)


@router.get("/{migration_id}/report.md", response_class=PlainTextResponse)
def report_markdown(
    request: Request, who: Who, migration_id: Id, full: Annotated[bool, Query()] = False
) -> str:
    """The same report in Markdown."""
    return reports.to_markdown(
        reports.migration_report(hub_of(request), who, migration_id, full=full)
    )
