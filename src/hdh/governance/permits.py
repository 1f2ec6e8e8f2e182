"""Data permits: the only road from a project to a dataset.

A project's lead requests a permit for one dataset: a pinned version or the latest, the
columns needed, an optional row filter (``hdh.governance.rowfilter``) and an end date.
An administrator grants it as asked or narrower (fewer columns, an earlier end, an extra
condition on the rows), refuses it, or later revokes it. ``access`` is what every
reading path asks: it returns what the permit allows, or raises PermissionDenied naming
the missing permit, and records the refusal. Revocation and expiry take effect at once:
nothing is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hdh import audit, authz
from hdh.catalog.models import Dataset, DatasetVersion
from hdh.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from hdh.governance import rowfilter
from hdh.governance.models import Permit, Project
from hdh.governance.projects import _project, context
from hdh.hub import Hub
from hdh.identity.service import Principal

#: Project statuses in which a permit may be requested, and in which one may be granted.
REQUESTABLE = ("draft", "submitted", "approved", "active")
GRANTABLE = ("approved", "active")
DEFAULT_DAYS = 365


@dataclass
class PermitInfo:
    id: int
    project: str
    dataset: str
    version: int | None
    columns: list[str]
    row_filter: str
    valid_from: str
    valid_until: str
    status: str
    requested: dict[str, Any]
    requested_by: str
    decided_by: str | None
    note: str


@dataclass(frozen=True)
class Access:
    """What a project may read of a dataset, from its permit."""

    permit: int
    project: str
    dataset: str
    version: int  # the pinned version, or the latest at the time of asking
    columns: tuple[str, ...]
    row_filter: str
    expression: Any  # a pyarrow compute expression, or None when all rows are allowed


def _today() -> date:
    return datetime.now(UTC).date()


def _info(session: Session, permit: Permit) -> PermitInfo:
    project = session.get(Project, permit.project_id)
    dataset = session.get(Dataset, permit.dataset_id)
    assert project is not None
    assert dataset is not None
    return PermitInfo(
        permit.id,
        project.name,
        dataset.name,
        permit.version,
        list(permit.columns),
        permit.row_filter,
        permit.valid_from,
        permit.valid_until,
        permit.status,
        dict(permit.requested),
        permit.requested_by,
        permit.decided_by,
        permit.note,
    )


def _dataset_columns(session: Session, name: str, version: int | None) -> tuple[Dataset, list[str]]:
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(
            f"there is no dataset named {name!r}", hint="find it with hdh catalog search"
        )
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    query = (
        query.where(DatasetVersion.number == version)
        if version is not None
        else query.order_by(DatasetVersion.number.desc())
    )
    found = session.scalars(query.limit(1)).first()
    if found is None:
        raise NotFound(
            f"dataset {name!r} has no version {version}" if version else f"{name!r} has no version",
            hint="hdh dataset versions NAME lists them",
        )
    return dataset, [c["name"] for c in found.manifest.get("schema", [])]


def _check_columns(wanted: list[str], available: list[str], dataset: str) -> list[str]:
    if not wanted:
        raise InvalidInput("a permit names the columns it needs", hint="give --column (repeat)")
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise InvalidInput(
            f"dataset {dataset!r} has no column {', '.join(unknown)}",
            hint=f"its columns are: {', '.join(available)}",
        )
    return sorted(set(wanted), key=wanted.index)


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{what} {text!r} is not a date", hint="write it as YYYY-MM-DD"
        ) from None


def request_permit(
    hub: Hub,
    principal: Principal,
    project_name: str,
    dataset_name: str,
    *,
    columns: list[str],
    row_filter: str = "",
    version: int | None = None,
    until: str | None = None,
    note: str = "",
) -> PermitInfo:
    with hub.read() as session:
        project = _project(session, project_name)
        where = context(session, principal, project)
    authz.check(hub, principal, "permit.request", where)
    with hub.transaction() as session:
        project = _project(session, project_name)
        if project.status not in REQUESTABLE:
            raise Conflict(
                f"project {project_name!r} is {project.status}: it cannot ask for data",
                hint=f"permits are requested while a project is {', '.join(REQUESTABLE)}",
            )
        dataset, available = _dataset_columns(session, dataset_name, version)
        chosen = _check_columns(columns, available, dataset_name)
        normal = rowfilter.parse(row_filter, chosen)[0] if row_filter.strip() else ""
        today = _today()
        end = _date(until, "the end date") if until else today + timedelta(days=DEFAULT_DAYS)
        if project.ends_on and end > date.fromisoformat(project.ends_on):
            end = date.fromisoformat(project.ends_on)  # never beyond the project
        if end < today:
            raise InvalidInput(f"the end date {end} is past", hint="give a date from today on")
        asked = {
            "version": version,
            "columns": chosen,
            "row_filter": normal,
            "valid_until": end.isoformat(),
        }
        permit = Permit(
            project_id=project.id,
            dataset_id=dataset.id,
            version=version,
            columns=chosen,
            row_filter=normal,
            valid_from=today.isoformat(),
            valid_until=end.isoformat(),
            status="requested",
            requested=asked,
            requested_by=principal.actor,
            requested_at=audit.utc_timestamp(),
            note=note,
        )
        session.add(permit)
        session.flush()
        audit.record(
            session,
            actor=principal.actor,
            action="permit.request",
            object_type="permit",
            object_id=str(permit.id),
            details={"project": project_name, "dataset": dataset_name, **asked},
        )
        return _info(session, permit)


def _permit(session: Session, permit_id: int) -> Permit:
    permit = session.get(Permit, permit_id)
    if permit is None:
        raise NotFound(f"there is no permit #{permit_id}", hint="list them with hdh permit list")
    return permit


def decide(
    hub: Hub,
    principal: Principal,
    permit_id: int,
    action: str,
    *,
    columns: list[str] | None = None,
    until: str | None = None,
    extra_filter: str = "",
    note: str = "",
) -> PermitInfo:
    """``grant`` (as asked, or narrower), ``refuse`` a request, or ``revoke`` a grant."""
    authz.check(hub, principal, "permit.decide")
    with hub.transaction() as session:
        permit = _permit(session, permit_id)
        project = session.get(Project, permit.project_id)
        assert project is not None
        needed = {"grant": "requested", "refuse": "requested", "revoke": "granted"}[action]
        if permit.status != needed:
            done = {"grant": "granted", "refuse": "refused", "revoke": "revoked"}[action]
            raise Conflict(
                f"permit #{permit_id} is {permit.status}: it cannot be {done}",
                hint=f"only a {needed} permit can be {done}",
            )
        changes: dict[str, Any] = {}
        if action == "grant":
            if project.status not in GRANTABLE:
                raise Conflict(
                    f"project {project.name!r} is {project.status}: no permit can be granted",
                    hint="grant permits once the project is approved",
                )
            if columns is not None:
                wider = [c for c in columns if c not in permit.columns]
                if wider:
                    raise InvalidInput(
                        f"column {', '.join(wider)} was not requested",
                        hint="a grant gives the columns asked for, or fewer",
                    )
                permit.columns = _check_columns(columns, list(permit.columns), "the request")
                changes["columns"] = permit.columns
            if until is not None:
                end = _date(until, "the end date")
                if end > date.fromisoformat(permit.valid_until):
                    raise InvalidInput(
                        f"{end} is after the end asked for ({permit.valid_until})",
                        hint="a grant ends when asked, or earlier",
                    )
                permit.valid_until = end.isoformat()
                changes["valid_until"] = permit.valid_until
            if permit.row_filter:
                # Narrowing the columns must keep every column the filter needs.
                rowfilter.parse(permit.row_filter, permit.columns)
            if extra_filter.strip():
                extra = rowfilter.parse(extra_filter, permit.columns)[0]
                permit.row_filter = (
                    f"({permit.row_filter}) and ({extra})" if permit.row_filter else extra
                )
                changes["row_filter"] = permit.row_filter
            permit.status = "granted"
        elif action == "refuse":
            permit.status = "refused"
        else:
            permit.status = "revoked"
            permit.revoked_at = audit.utc_timestamp()
        permit.decided_by = principal.actor
        permit.decided_at = audit.utc_timestamp()
        if note:
            permit.note = note
        audit.record(
            session,
            actor=principal.actor,
            action=f"permit.{action}",
            object_type="permit",
            object_id=str(permit_id),
            details={"project": project.name, **changes, **({"note": note} if note else {})},
        )
        return _info(session, permit)


def list_permits(
    hub: Hub, principal: Principal, project_name: str | None = None
) -> list[PermitInfo]:
    with hub.read() as session:
        query = select(Permit).order_by(Permit.id)
        if project_name is not None:
            query = query.where(Permit.project_id == _project(session, project_name).id)
        out = []
        for permit in session.scalars(query):
            project = session.get(Project, permit.project_id)
            assert project is not None
            if authz.can(principal, "permit.read", context(session, principal, project)):
                out.append(_info(session, permit))
        return out


def access(
    hub: Hub, principal: Principal, project_name: str, dataset_name: str, *, purpose: str = ""
) -> Access:
    """What ``principal``, working in ``project_name``, may read of ``dataset_name``; or a
    PermissionDenied naming the missing permit (audited as ``permit.denied``)."""
    with hub.read() as session:
        project = _project(session, project_name)
        where = context(session, principal, project)
        allowed = authz.can(principal, "data.read", where)
        status = project.status
        dataset = session.scalar(select(Dataset).where(Dataset.name == dataset_name))
        permits = (
            session.scalars(
                select(Permit)
                .where(Permit.project_id == project.id, Permit.dataset_id == dataset.id)
                .order_by(Permit.id.desc())
            ).all()
            if dataset is not None
            else []
        )
        today = _today()
        usable = [
            p
            for p in permits
            if p.status == "granted"
            and date.fromisoformat(p.valid_from) <= today <= date.fromisoformat(p.valid_until)
        ]
        reason = None
        if not allowed:
            reason = f"{principal.name} is not an analyst or lead of project {project_name!r}"
        elif status != "active":
            reason = f"project {project_name!r} is {status}, not active"
        elif dataset is None:
            reason = f"there is no dataset named {dataset_name!r}"
        elif not usable:
            reason = _why_not(project_name, dataset_name, permits, today)
        if reason is None:
            permit = usable[0]
            version = permit.version or _latest(session, permit.dataset_id)
            expression = (
                rowfilter.parse(permit.row_filter, permit.columns)[1] if permit.row_filter else None
            )
            return Access(
                permit.id,
                project_name,
                dataset_name,
                version,
                tuple(permit.columns),
                permit.row_filter,
                expression,
            )
    with hub.transaction() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="permit.denied",
            object_type="dataset",
            object_id=dataset_name,
            outcome="denied",
            details={
                "project": project_name,
                "reason": reason,
                **({"purpose": purpose} if purpose else {}),
            },
        )
    raise PermissionDenied(
        f"not permitted: {reason}",
        hint="the project lead can request a permit (hdh permit request); an administrator "
        "grants it",
    )


def _latest(session: Session, dataset_id: int) -> int:
    number = session.scalar(
        select(DatasetVersion.number)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    )
    assert number is not None
    return number


def _why_not(project: str, dataset: str, permits: Sequence[Permit], today: date) -> str:
    if not permits:
        return f"project {project!r} has no permit for dataset {dataset!r}"
    latest = permits[0]
    if latest.status == "revoked":
        return (
            f"permit #{latest.id} for {dataset!r} was revoked on {(latest.revoked_at or '')[:10]}"
        )
    if latest.status == "granted" and date.fromisoformat(latest.valid_until) < today:
        return f"permit #{latest.id} for {dataset!r} expired on {latest.valid_until}"
    if latest.status == "granted":
        return f"permit #{latest.id} for {dataset!r} starts on {latest.valid_from}"
    return f"permit #{latest.id} for {dataset!r} is {latest.status}, not granted"
