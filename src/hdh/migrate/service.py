"""Moving every object the hub holds on one location to another, proven object by object.

``plan_migration`` lists what the hub recorded on the source (``stored_objects``: dataset
parts and manifests, project extracts and tables, job outputs, airlock and released
files), checks the residency policy for the target for every data class among them
(refused, audited, before anything moves), groups them into waves (datasets first,
then each project's area, then the rest) and records one row per object.

``run_migration`` copies the ciphertext as it is: no key is used and nothing is
decrypted. Each object is read from the source and its SHA-256 compared with the
hub's record (a corrupted source is reported as ``corrupt`` and never copied), written
to the target, then read back from the target and hashed again; only then is it marked
``copied``, in its own transaction. A run that stops (a crash, Ctrl-C, a target that
refuses writes) is resumed by running again: copied objects are skipped.

``verify_migration`` lists the target independently and compares it with the plan:
missing objects, sizes, and with ``full`` the SHA-256 of every byte.

``cutover`` copies the delta (objects written to the source since the plan) and then
points every record at the target in one transaction; ``rollback`` points them back
while the target holds nothing new. Per-wave cutover, decommissioning the source,
several workers and the report are not built yet.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from hdh import audit, authz, policy
from hdh.errors import Conflict, HubError, InvalidInput, NotFound
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.migrate.models import Migration, MigrationObject
from hdh.storage.backend import ObjectNotFound
from hdh.storage.locations import get_location
from hdh.storage.models import StoredObject
from hdh.storage.objects import backend_for

#: Used only for the plan's time estimate.
ESTIMATE_BYTES_PER_S = 40 * 10**6


@dataclass
class MigrationInfo:
    id: int
    source: str
    target: str
    status: str
    waves: list[dict[str, Any]]
    objects: int
    bytes: int
    states: dict[str, int]
    estimate_s: float
    created_by: str
    created_at: str


@dataclass
class RunResult:
    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    corrupt: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass
class VerifyResult:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    wrong_hash: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong_size or self.wrong_hash)


def _wave_of(key: str) -> tuple[int, str]:
    """Datasets first (every project reads them), then each project's area, then the
    rest (airlock copies, releases, other objects)."""
    parts = key.split("/")
    if parts[0] == "datasets":
        return 0, "datasets"
    if parts[0] == "projects" and len(parts) > 1:
        return 1, f"project {parts[1]}"
    return 2, "other"


def plan_migration(hub: Hub, principal: Principal, source: str, target: str) -> MigrationInfo:
    """Record the move of everything on ``source`` to ``target`` (see the module)."""
    authz.check(hub, principal, "hub.operate")
    if source == target:
        raise InvalidInput(
            "the source and the target are the same location", hint="give two locations"
        )
    with hub.transaction() as session:
        src = get_location(session, source)
        dst = get_location(session, target)
        rows = session.execute(
            select(
                StoredObject.key, StoredObject.size, StoredObject.sha256, StoredObject.data_class
            )
            .where(StoredObject.location_id == src.id)
            .order_by(StoredObject.key)
        ).all()
        if not rows:
            raise NotFound(f"the hub holds no object on {source!r}", hint="nothing to move")
        for data_class in sorted({r.data_class for r in rows}):
            refused = policy.check_placement(
                session, dst, data_class, actor=principal.actor, what=f"migration to {target!r}"
            )
            if refused is not None:
                session.commit()
                raise refused
    groups: dict[tuple[int, str], list[Any]] = {}
    for row in rows:
        groups.setdefault(_wave_of(row.key), []).append(row)
    waves: list[dict[str, Any]] = []
    wave_number: dict[str, int] = {}
    for number, ((_, label), items) in enumerate(sorted(groups.items()), start=1):
        wave_number[label] = number
        waves.append(
            {"wave": number, "what": label, "objects": len(items),
             "bytes": sum(r.size for r in items)}
        )  # fmt: skip
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        migration = Migration(
            source=source, target=target, status="planned", waves=waves, objects=len(rows),
            bytes=sum(r.size for r in rows), created_by=principal.actor, created_at=now,
        )  # fmt: skip
        session.add(migration)
        session.flush()
        for row in rows:
            session.add(
                MigrationObject(
                    migration_id=migration.id, wave=wave_number[_wave_of(row.key)[1]],
                    key=row.key, size=row.size, sha256=row.sha256, state="pending",
                    attempts=0, error="",
                )
            )  # fmt: skip
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.plan",
            object_type="migration",
            object_id=str(migration.id),
            details={"source": source, "target": target, "objects": len(rows), "waves": waves},
        )
        migration_id = migration.id
    return migration_info(hub, principal, migration_id)


def migration_info(hub: Hub, principal: Principal, migration_id: int) -> MigrationInfo:
    authz.check(hub, principal, "hub.operate")
    with hub.read() as session:
        migration = session.get(Migration, migration_id)
        if migration is None:
            raise NotFound(f"there is no migration {migration_id}", hint="see hdh migrate list")
        states = dict(
            session.execute(
                select(MigrationObject.state, func.count())
                .where(MigrationObject.migration_id == migration_id)
                .group_by(MigrationObject.state)
            ).all()
        )
        return MigrationInfo(
            migration.id, migration.source, migration.target, migration.status,
            list(migration.waves), migration.objects, migration.bytes,
            {str(k): int(v) for k, v in states.items()},
            round(migration.bytes / ESTIMATE_BYTES_PER_S, 1), migration.created_by,
            migration.created_at,
        )  # fmt: skip


def run_migration(
    hub: Hub, principal: Principal, migration_id: int, *, wave: int | None = None
) -> RunResult:
    """Copy the plan's objects that are not copied yet (of ``wave`` only, if given)."""
    info = migration_info(hub, principal, migration_id)
    if wave is not None and wave not in {w["wave"] for w in info.waves}:
        raise InvalidInput(
            f"migration {migration_id} has no wave {wave}",
            hint=f"its waves are 1 to {len(info.waves)}",
        )
    with hub.read() as session:
        source = backend_for(hub, get_location(session, info.source))
        target = backend_for(hub, get_location(session, info.target))
        query = select(MigrationObject.id, MigrationObject.key, MigrationObject.sha256).where(
            MigrationObject.migration_id == migration_id, MigrationObject.state != "copied"
        )
        if wave is not None:
            query = query.where(MigrationObject.wave == wave)
        todo = session.execute(query.order_by(MigrationObject.wave, MigrationObject.key)).all()
    _set_status(hub, migration_id, "running")
    result = RunResult(skipped=info.states.get("copied", 0))
    began = time.monotonic()
    try:
        for object_id, key, expected in todo:
            state, error = _copy(source, target, key, expected)
            if state == "copied":
                result.copied += 1
            elif state == "corrupt":
                result.corrupt.append(key)
            else:
                result.failed.append(key)
            with hub.transaction() as session:
                row = session.get(MigrationObject, object_id)
                assert row is not None
                row.state, row.error = state, error
                row.attempts += 1
                if state == "copied":
                    row.copied_at = audit.utc_timestamp()
                    result.bytes += row.size
                else:
                    audit.record(
                        session,
                        actor=principal.actor,
                        action="migrate.object",
                        object_type="object",
                        object_id=f"{info.source}:{key}",
                        outcome="failure",
                        details={"migration": migration_id, "state": state, "error": error},
                    )
    finally:
        result.seconds = time.monotonic() - began
        remaining = migration_info(hub, principal, migration_id)
        status = (
            "copied" if remaining.states.get("copied", 0) == remaining.objects else "incomplete"
        )
        _set_status(hub, migration_id, status)
        with hub.transaction() as session:
            audit.record(
                session,
                actor=principal.actor,
                action="migrate.run",
                object_type="migration",
                object_id=str(migration_id),
                outcome="success" if status == "copied" else "failure",
                details={
                    "wave": wave, "copied": result.copied, "bytes": result.bytes,
                    "corrupt": len(result.corrupt), "failed": len(result.failed),
                    "seconds": round(result.seconds, 3), "status": status,
                },
            )  # fmt: skip
    return result


def _copy(source: Any, target: Any, key: str, expected: str) -> tuple[str, str]:
    """Copy one object; (state, error)."""
    try:
        data = source.get(key)
    except HubError as exc:
        return "failed", f"reading the source: {exc}"
    if hashlib.sha256(data).hexdigest() != expected:
        return "corrupt", "the source does not match the SHA-256 the hub recorded; not copied"
    try:
        target.put(key, data)
        written = target.get(key)
    except HubError as exc:
        return "failed", f"writing the target: {exc}"
    if hashlib.sha256(written).hexdigest() != expected:
        return "failed", "the copy read back from the target does not match; it will be retried"
    return "copied", ""


def _set_status(hub: Hub, migration_id: int, status: str) -> None:
    with hub.transaction() as session:
        migration = session.get(Migration, migration_id)
        assert migration is not None
        migration.status = status


def verify_migration(
    hub: Hub, principal: Principal, migration_id: int, *, full: bool = False
) -> VerifyResult:
    """List the target and compare it with the plan (``full``: re-read every byte)."""
    info = migration_info(hub, principal, migration_id)
    with hub.read() as session:
        target = backend_for(hub, get_location(session, info.target))
        planned = {
            key: (size, sha)
            for key, size, sha in session.execute(
                select(MigrationObject.key, MigrationObject.size, MigrationObject.sha256).where(
                    MigrationObject.migration_id == migration_id
                )
            ).all()
        }
    listed = {item.key: item.size for item in target.list()}
    result = VerifyResult(checked=len(planned))
    for key, (size, sha) in sorted(planned.items()):
        if key not in listed:
            result.missing.append(key)
        elif listed[key] != size:
            result.wrong_size.append(key)
        elif full:
            try:
                data = target.get(key)
            except ObjectNotFound:
                result.missing.append(key)
                continue
            if hashlib.sha256(data).hexdigest() != sha:
                result.wrong_hash.append(key)
    result.extra = sorted(set(listed) - set(planned))
    bad = result.missing + result.wrong_size + result.wrong_hash
    with hub.transaction() as session:
        # What the target lacks or alters is copied again by the next run.
        for row in session.scalars(
            select(MigrationObject).where(
                MigrationObject.migration_id == migration_id, MigrationObject.key.in_(bad)
            )
        ):
            row.state, row.error = "pending", "not found as planned on the target by verify"
        if bad:
            session.get(Migration, migration_id).status = "incomplete"  # type: ignore[union-attr]
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.verify",
            object_type="migration",
            object_id=str(migration_id),
            outcome="success" if result.ok else "failure",
            details={
                "full": full, "checked": result.checked, "missing": len(result.missing),
                "wrong_size": len(result.wrong_size), "wrong_hash": len(result.wrong_hash),
                "extra": len(result.extra),
            },
        )  # fmt: skip
    return result


def _references(
    session: Any, source_id: int, target_id: int, source: str, target: str
) -> dict[str, int]:
    """Point every record that names the source location at the target instead."""
    from sqlalchemy import update

    from hdh.airlock.models import ExportRequest
    from hdh.catalog.models import DatasetVersion
    from hdh.governance.models import Job, ProjectExtract, ProjectTable

    moved: dict[str, int] = {}
    for name, model in (
        ("objects", StoredObject), ("dataset_versions", DatasetVersion),
        ("project_tables", ProjectTable), ("project_extracts", ProjectExtract),
    ):  # fmt: skip
        done = session.execute(
            update(model).where(model.location_id == source_id).values(location_id=target_id)
        )
        moved[name] = done.rowcount
    by_name: tuple[tuple[str, Any], ...] = (("jobs", Job), ("export_requests", ExportRequest))
    for name, named in by_name:
        done = session.execute(
            update(named).where(named.location == source).values(location=target)
        )
        moved[name] = done.rowcount
    return moved


def cutover(hub: Hub, principal: Principal, migration_id: int) -> dict[str, int]:
    """Switch the hub to the target: first record and copy what was written to the
    source since the plan (the delta), then, in one transaction, point every record at
    the target. Refused while an object is not copied, or if the source changed during
    the switch. The source is left as it is (``rollback`` switches back)."""
    info = migration_info(hub, principal, migration_id)
    if info.status not in ("copied", "incomplete", "planned", "running"):
        raise Conflict(f"migration {migration_id} is {info.status}", hint="see hdh migrate status")
    with hub.transaction() as session:
        src = get_location(session, info.source)
        planned = set(
            session.scalars(
                select(MigrationObject.key).where(MigrationObject.migration_id == migration_id)
            )
        )
        delta = [
            r
            for r in session.execute(
                select(StoredObject.key, StoredObject.size, StoredObject.sha256).where(
                    StoredObject.location_id == src.id
                )
            ).all()
            if r.key not in planned
        ]
        for row in delta:
            session.add(
                MigrationObject(
                    migration_id=migration_id, wave=len(info.waves) + 1, key=row.key,
                    size=row.size, sha256=row.sha256, state="pending", attempts=0, error="",
                )
            )  # fmt: skip
        migration = session.get(Migration, migration_id)
        assert migration is not None
        migration.objects += len(delta)
        migration.bytes += sum(r.size for r in delta)
    result = run_migration(hub, principal, migration_id)
    if (
        result.corrupt
        or result.failed
        or migration_info(hub, principal, migration_id).status != "copied"
    ):
        raise Conflict(
            f"migration {migration_id} has objects that are not copied "
            f"({len(result.corrupt)} corrupt, {len(result.failed)} failed): cutover refused",
            hint="repair them and run hdh migrate run again",
        )
    with hub.transaction() as session:
        src, dst = get_location(session, info.source), get_location(session, info.target)
        keys = set(
            session.scalars(
                select(MigrationObject.key).where(MigrationObject.migration_id == migration_id)
            )
        )
        now_on_source = set(
            session.scalars(select(StoredObject.key).where(StoredObject.location_id == src.id))
        )
        if now_on_source - keys:
            raise Conflict(
                f"{len(now_on_source - keys)} object(s) were written to {info.source!r} "
                "during the cutover",
                hint="run hdh migrate cutover again",
            )
        clash = session.scalar(
            select(func.count()).where(
                StoredObject.location_id == dst.id, StoredObject.key.in_(keys)
            )
        )
        if clash:
            raise Conflict(
                f"{clash} object(s) of the plan are already recorded on {info.target!r}",
                hint="the target must not hold the hub's objects under the same keys",
            )
        moved = _references(session, src.id, dst.id, info.source, info.target)
        session.get(Migration, migration_id).status = "cut over"  # type: ignore[union-attr]
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.cutover",
            object_type="migration",
            object_id=str(migration_id),
            details={"delta": len(delta), "moved": moved},
        )
    return {"delta": len(delta), **moved}


def rollback(hub: Hub, principal: Principal, migration_id: int) -> dict[str, int]:
    """Switch the hub back to the source after a cutover. Refused when objects were
    written to the target since (they are not on the source)."""
    info = migration_info(hub, principal, migration_id)
    if info.status != "cut over":
        raise Conflict(
            f"migration {migration_id} is {info.status}, not cut over", hint="nothing to undo"
        )
    with hub.transaction() as session:
        src, dst = get_location(session, info.source), get_location(session, info.target)
        keys = set(
            session.scalars(
                select(MigrationObject.key).where(MigrationObject.migration_id == migration_id)
            )
        )
        newer = (
            set(session.scalars(select(StoredObject.key).where(StoredObject.location_id == dst.id)))
            - keys
        )
        if newer:
            raise Conflict(
                f"{len(newer)} object(s) were written to {info.target!r} since the cutover "
                f"and are not on {info.source!r}",
                hint="plan a migration back instead of rolling back",
            )
        moved = _references(session, dst.id, src.id, info.target, info.source)
        session.get(Migration, migration_id).status = "copied"  # type: ignore[union-attr]
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.rollback",
            object_type="migration",
            object_id=str(migration_id),
            details={"moved": moved},
        )
    return moved
