"""Moving every object the hub holds on one location to another, proven object by object.

``plan_migration`` lists what the hub recorded on the source (``stored_objects``: dataset
parts, manifests and quarantines, project extracts, tables and job outputs, airlock and
released files), checks the residency policy for the target for every data class among
them (refused, audited, before anything moves), groups them into waves (datasets first,
since every project reads them, then each project's area) and records one row per
object.

``run_migration`` copies the ciphertext as it is: no key is used and nothing is
decrypted (see ``hdh.migrate.transfer`` for how each object is proven on both ends).
A migration planned with ``rekey`` instead gives every copy new keys
(``hdh.migrate.rekeying``); its cutover points the hub's records at the copies' sizes,
hashes and keys, its rollback back at the source's, and its decommission destroys the
source's data keys with the source copies.
Objects are claimed in batches (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
several processes, on one machine or several sharing the database, copy one migration
together without copying an object twice. Each object's outcome is committed on its
own; a run that stops (a crash, SIGKILL, Ctrl-C, a target that refuses writes) is resumed
by running again: copied objects are skipped, and the claims of a process that is gone
lapse.

``verify_migration`` lists the target independently and compares it with the plan:
missing objects, sizes, and with ``full`` the SHA-256 of every byte.

``cutover`` switches waves to the target: it first records and copies what was written
to the source since the plan (the delta), then, in one transaction, points the wave's
objects and every record whose objects all belong to it at the target. Readers follow
the records, so they read from the source before that commit and from the target
after. ``rollback`` points a wave back while the target holds nothing new in its area.
``decommission`` deletes the source copies once every wave is cut over, the target is
verified and the grace period has passed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from hdh import audit, authz, policy
from hdh.crypto.models import DataKey
from hdh.errors import Conflict, HubError, InvalidInput, NotFound
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.migrate.models import Migration, MigrationObject
from hdh.migrate.rekeying import Copy, SourceKey, rekey_copy, source_key
from hdh.migrate.transfer import ClaimLost, Outcome, Resume, copy_object
from hdh.migrate.workers import is_gone, this_worker
from hdh.storage.backend import Backend, ObjectNotFound
from hdh.storage.locations import get_location
from hdh.storage.models import StoredObject
from hdh.storage.objects import backend_for

log = logging.getLogger(__name__)

#: Used only for the plan's time estimate.
ESTIMATE_BYTES_PER_S = 40 * 10**6
#: Keys per statement when records are moved in bulk.
_CHUNK = 500

#: (objects done, bytes done, objects to do, bytes to do) after each object.
ProgressFn = Callable[[int, int, int, int], None]


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
    cut_over_at: str | None = None
    decommissioned_at: str | None = None
    #: Workers holding claims now.
    workers: list[str] = field(default_factory=list)
    #: The copies get new keys (see ``hdh.migrate.rekeying``).
    rekey: bool = False


@dataclass
class RunResult:
    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    corrupt: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    worker: str = ""
    #: Ended early because the caller's ``stop`` was set: what is not copied is left for
    #: the next run.
    stopped: bool = False


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


def wave_label(key: str) -> tuple[int, str]:
    """Datasets first (every project reads them), then each project's area (its extracts,
    tables, jobs, airlock requests and releases), then anything else."""
    parts = key.split("/")
    if parts[0] in ("datasets", "quarantine"):
        return 0, "datasets"
    if parts[0] in ("projects", "airlock", "releases") and len(parts) > 2:
        return 1, f"project {parts[1]}"
    return 2, "other"


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def plan_migration(
    hub: Hub, principal: Principal, source: str, target: str, *, rekey: bool = False
) -> MigrationInfo:
    """Record the move of everything on ``source`` to ``target`` (see the module);
    ``rekey``: the copies get new keys."""
    authz.check(hub, principal, "hub.operate")
    if source == target:
        raise InvalidInput(
            "the source and the target are the same location", hint="give two locations"
        )
    with hub.transaction() as session:
        src = get_location(session, source)
        dst = get_location(session, target)
        open_one = session.scalar(
            select(Migration.id).where(
                Migration.source == source,
                Migration.status.not_in(("cut over", "decommissioned", "cancelled")),
            )
        )
        if open_one is not None:
            raise Conflict(
                f"migration {open_one} from {source!r} is not finished",
                hint=f"go on with it (hdh migrate status {open_one}) rather than planning another",
            )
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
        groups.setdefault(wave_label(row.key), []).append(row)
    waves: list[dict[str, Any]] = []
    wave_number: dict[str, int] = {}
    for number, ((_, label), items) in enumerate(sorted(groups.items()), start=1):
        wave_number[label] = number
        waves.append(_wave_entry(number, label, len(items), sum(r.size for r in items)))
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        migration = Migration(
            source=source, target=target, status="planned", waves=waves, objects=len(rows),
            bytes=sum(r.size for r in rows), created_by=principal.actor, created_at=now,
            rekey=rekey,
        )  # fmt: skip
        session.add(migration)
        session.flush()
        for row in rows:
            session.add(
                MigrationObject(
                    migration_id=migration.id, wave=wave_number[wave_label(row.key)[1]],
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
            details={
                "source": source,
                "target": target,
                "objects": len(rows),
                "waves": waves,
                "rekey": rekey,
            },
        )
        migration_id = migration.id
    return migration_info(hub, principal, migration_id)


def _wave_entry(number: int, label: str, objects: int, size: int) -> dict[str, Any]:
    return {
        "wave": number, "what": label, "objects": objects, "bytes": size,
        "state": "planned", "cut_over_at": None,
    }  # fmt: skip


def _get(session: Session, migration_id: int) -> Migration:
    migration = session.get(Migration, migration_id)
    if migration is None:
        raise NotFound(f"there is no migration {migration_id}", hint="see hdh migrate list")
    return migration


def _live_workers(session: Session, migration_id: int, lease_s: float) -> list[str]:
    claimed = session.scalars(
        select(MigrationObject.claimed_by)
        .where(
            MigrationObject.migration_id == migration_id,
            MigrationObject.claimed_by.is_not(None),
            MigrationObject.claimed_at >= time.time() - lease_s,
        )
        .distinct()
    ).all()
    return sorted(w for w in claimed if w is not None and not is_gone(w))


def _refresh(session: Session, migration: Migration, lease_s: float) -> None:
    """Set the migration's status from its waves and objects."""
    session.flush()
    states = dict(
        session.execute(
            select(MigrationObject.state, func.count())
            .where(MigrationObject.migration_id == migration.id)
            .group_by(MigrationObject.state)
        ).all()
    )
    cut = [w for w in migration.waves if w.get("state") == "cut over"]
    if migration.decommissioned_at:
        migration.status = "decommissioned"
        return
    if migration.status in ("cancelled", "decommissioning"):
        return
    if migration.waves and len(cut) == len(migration.waves):
        status = "cut over"
    elif cut:
        status = "partly cut over"
    elif states.get("copied", 0) == migration.objects:
        status = "copied"
    elif _live_workers(session, migration.id, lease_s):
        status = "running"
    elif set(states) - {"pending"} or session.scalar(
        select(func.count()).where(
            MigrationObject.migration_id == migration.id, MigrationObject.attempts > 0
        )
    ):
        status = "incomplete"
    else:
        status = "planned"
    migration.status = status


def list_migrations(hub: Hub, principal: Principal) -> list[MigrationInfo]:
    authz.check(hub, principal, "hub.operate")
    with hub.read() as session:
        ids = session.scalars(select(Migration.id).order_by(Migration.id)).all()
    return [migration_info(hub, principal, i) for i in ids]


def migration_info(hub: Hub, principal: Principal, migration_id: int) -> MigrationInfo:
    authz.check(hub, principal, "hub.operate")
    with hub.read() as session:
        migration = _get(session, migration_id)
        states = dict(
            session.execute(
                select(MigrationObject.state, func.count())
                .where(MigrationObject.migration_id == migration_id)
                .group_by(MigrationObject.state)
            ).all()
        )
        workers = _live_workers(session, migration_id, hub.settings.migrate.lease_s)
        return MigrationInfo(
            migration.id, migration.source, migration.target, migration.status,
            [dict(w) for w in migration.waves], migration.objects, migration.bytes,
            {str(k): int(v) for k, v in states.items()},
            round(migration.bytes / ESTIMATE_BYTES_PER_S, 1), migration.created_by,
            migration.created_at, migration.cut_over_at, migration.decommissioned_at,
            workers, bool(migration.rekey),
        )  # fmt: skip


def throughput(
    hub: Hub, principal: Principal, migration_id: int, *, buckets: int = 40
) -> list[dict[str, Any]]:
    """Bytes copied over time: the span from the first to the last copy cut into at most
    ``buckets`` equal intervals, each with its start (UTC), length and bytes per second
    (objects counted when their copy was recorded)."""
    authz.check(hub, principal, "hub.operate")
    second = func.substr(MigrationObject.copied_at, 1, 19)  # summed per second in SQL
    with hub.read() as session:
        _get(session, migration_id)
        rows = session.execute(
            select(second, func.sum(MigrationObject.size))
            .where(
                MigrationObject.migration_id == migration_id,
                MigrationObject.copied_at.is_not(None),
            )
            .group_by(second)
        ).all()
    if not rows:
        return []
    moments = [(datetime.fromisoformat(f"{at}+00:00"), int(size)) for at, size in rows]
    first = min(m for m, _ in moments)
    span = (max(m for m, _ in moments) - first).total_seconds() + 1.0  # the last second too
    count = max(1, min(buckets, int(span)))
    width = span / count
    sums = [0] * count
    for moment, size in moments:
        sums[min(count - 1, int((moment - first).total_seconds() / width))] += int(size)
    return [
        {
            "start": audit.utc_timestamp(first + timedelta(seconds=i * width)),
            "seconds": round(width, 3),
            "bytes_per_s": round(total / width, 1),
        }
        for i, total in enumerate(sums)
    ]


def _backends(hub: Hub, info: MigrationInfo) -> tuple[Backend, Backend]:
    with hub.read() as session:
        return (
            backend_for(hub, get_location(session, info.source)),
            backend_for(hub, get_location(session, info.target)),
        )


def _release_lapsed(hub: Hub, migration_id: int) -> None:
    """Free the claims of workers of this machine that are gone (killed, crashed)."""
    with hub.transaction() as session:
        holders = session.scalars(
            select(MigrationObject.claimed_by)
            .where(
                MigrationObject.migration_id == migration_id,
                MigrationObject.claimed_by.is_not(None),
            )
            .distinct()
        ).all()
        for holder in holders:
            if holder is not None and is_gone(holder):
                session.execute(
                    update(MigrationObject)
                    .where(
                        MigrationObject.migration_id == migration_id,
                        MigrationObject.claimed_by == holder,
                    )
                    .values(claimed_by=None, claimed_at=None)
                )


def _claim(
    hub: Hub, migration_id: int, wave: int | None, run_id: str, me: str, size: int
) -> list[Any]:
    """Take up to ``size`` objects nobody holds and this run has not tried yet, in the
    plan's order (one statement: the rows it updates are the ones it answers)."""
    now = time.time()
    lease_s = hub.settings.migrate.lease_s
    with hub.transaction() as session:
        pick = select(MigrationObject.id).where(
            MigrationObject.migration_id == migration_id,
            MigrationObject.state != "copied",
            or_(MigrationObject.last_run.is_(None), MigrationObject.last_run != run_id),
            or_(MigrationObject.claimed_by.is_(None), MigrationObject.claimed_at < now - lease_s),
        )
        if wave is not None:
            pick = pick.where(MigrationObject.wave == wave)
        pick = (
            pick.order_by(MigrationObject.wave, MigrationObject.key)
            .limit(size)
            .with_for_update(skip_locked=True)
        )
        claimed = session.execute(
            update(MigrationObject)
            .where(MigrationObject.id.in_(pick.scalar_subquery()))
            .values(claimed_by=me, claimed_at=now, last_run=run_id)
            .returning(
                MigrationObject.id, MigrationObject.key, MigrationObject.size,
                MigrationObject.sha256, MigrationObject.upload_id, MigrationObject.wave,
            )
            .execution_options(synchronize_session=False)
        ).all()  # fmt: skip
    return sorted(claimed, key=lambda row: (row.wave, row.key))


def _record(
    hub: Hub,
    principal: Principal,
    migration_id: int,
    outcomes: list[tuple[Any, Outcome]],
    me: str,
    run_id: str,
    source: str,
    target: str = "",
) -> None:
    """Commit the outcomes of several objects at once (none is fine), and renew this
    worker's claims. Should the process die before, those objects are simply copied
    again."""
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        rows = []
        rekeyed = [(c, o) for c, o in outcomes if o.made is not None]
        if rekeyed and _get(session, migration_id).status != "cancelled":
            # (A cancelled migration destroyed its copies' keys: none is added back.)
            dst = get_location(session, target)
            for claimed, outcome in rekeyed:
                _record_rekeyed(session, claimed, outcome, me, run_id, now, dst.id)
        for claimed, outcome in outcomes:
            copied = outcome.state == "copied"
            if outcome.made is not None or outcome.state == "stopped":
                continue  # (stopped: still pending, its claim released at the run's end)
            rows.append({
                "oid": claimed.id, "sha": claimed.sha256,
                "new_state": outcome.state, "new_error": outcome.error,
                "tries": outcome.tries, "at": now if copied else None,
                "by": me if copied else None, "reused": outcome.reused,
            })  # fmt: skip
            if not copied:
                audit.record(
                    session,
                    actor=principal.actor,
                    action="migrate.object",
                    object_type="object",
                    object_id=f"{source}:{claimed.key}",
                    outcome="failure",
                    details={"migration": migration_id, "state": outcome.state,
                             "error": outcome.error, "worker": me},
                )  # fmt: skip
        if rows:  # one statement for the whole group (executemany)
            session.connection().execute(
                update(MigrationObject)
                # Not an object written again since it was claimed: its new bytes are
                # still to be copied. Not one whose claim lapsed and went to another run:
                # that run's outcome is the one to keep.
                .where(
                    MigrationObject.id == bindparam("oid"),
                    MigrationObject.sha256 == bindparam("sha"),
                    MigrationObject.last_run == run_id,
                )
                .values(
                    state=bindparam("new_state"), error=bindparam("new_error"),
                    attempts=MigrationObject.attempts + bindparam("tries"),
                    reused_bytes=bindparam("reused"),
                    claimed_by=None, claimed_at=None,
                    copied_at=func.coalesce(bindparam("at"), MigrationObject.copied_at),
                    copied_by=func.coalesce(bindparam("by"), MigrationObject.copied_by),
                ),
                rows,
            )  # fmt: skip
        _changed(
            session,
            update(MigrationObject)
            .where(MigrationObject.claimed_by == me)
            .values(claimed_at=time.time()),
        )
    outcomes.clear()


def _record_rekeyed(
    session: Session,
    claimed: Any,
    outcome: Outcome,
    me: str,
    run_id: str,
    now: str,
    target_id: int,
) -> None:
    """Record a re-keyed copy (on the guards of :func:`_record`) with its new data key.
    A copy made again (the target lost the earlier one) takes its place in the records
    that already point at the target (a wave cut over), and the earlier copy's key,
    which nothing reads now, is destroyed."""
    made: Copy = outcome.made
    earlier = session.execute(
        select(MigrationObject.copy_key_id, MigrationObject.copy_sha256).where(
            MigrationObject.id == claimed.id
        )
    ).one()
    kept = _changed(
        session,
        update(MigrationObject)
        .where(
            MigrationObject.id == claimed.id,
            MigrationObject.sha256 == claimed.sha256,
            MigrationObject.last_run == run_id,
        )
        .values(
            state="copied", error="", attempts=MigrationObject.attempts + outcome.tries,
            reused_bytes=0, claimed_by=None, claimed_at=None, copied_at=now, copied_by=me,
            copy_size=made.size, copy_sha256=made.sha256,
            copy_key_id=made.data_key.id if made.data_key is not None else None,
            source_key_id=made.source_key_id, copy_keks=made.keks,
            source_keks=made.source_keks,
        ),
    )  # fmt: skip
    if not kept:
        return
    if made.data_key is not None:
        session.add(made.data_key)
    session.flush()
    if (
        earlier.copy_sha256 is not None
        and earlier.copy_sha256 != made.sha256
        and session.scalar(
            select(func.count()).where(
                StoredObject.location_id == target_id, StoredObject.key == claimed.key
            )
        )
    ):  # the records point at the target's copy already (its wave was cut over)
        new_key = made.data_key.id if made.data_key is not None else None
        swap = _Swap(earlier.copy_sha256, made.size, made.sha256, new_key, made.keks)
        _swap_records(session, target_id, {claimed.key: swap})
    if earlier.copy_key_id is not None:
        _destroy_keys(session, [earlier.copy_key_id])


def _destroy_keys(session: Session, key_ids: list[str]) -> int:
    """Delete the data keys ``key_ids`` that no object record names any more, nor any
    migration still open (neither decommissioned nor cancelled) as the key of a copy or
    of a source: what they encrypted no longer opens."""
    open_ones = select(Migration.id).where(Migration.status.not_in(("decommissioned", "cancelled")))
    destroyed = 0
    for part in _chunks(sorted(set(key_ids))):
        named = set(
            session.scalars(
                select(StoredObject.data_key_id).where(StoredObject.data_key_id.in_(part))
            )
        )
        for column in (MigrationObject.copy_key_id, MigrationObject.source_key_id):
            named |= set(
                session.scalars(
                    select(column).where(
                        column.in_(part), MigrationObject.migration_id.in_(open_ones)
                    )
                )
            )
        unused = [k for k in part if k not in named]
        if unused:
            destroyed += _changed(session, delete(DataKey).where(DataKey.id.in_(unused)))
    return destroyed


def _keep_upload(hub: Hub, run_id: str, object_id: int, upload_id: str | None) -> None:
    """Keep where a large object's upload stands, at once: a process that dies next
    leaves the next one able to go on from it. Only while the object is still this run's:
    a run whose claim lapsed and went to another must not replace that one's upload
    (``ClaimLost`` for an upload begun; a finished one is left unsaid)."""
    with hub.transaction() as session:
        kept = _changed(
            session,
            update(MigrationObject)
            .where(MigrationObject.id == object_id, MigrationObject.last_run == run_id)
            .values(upload_id=upload_id),
        )
    if not kept and upload_id is not None:
        raise ClaimLost(
            f"object {object_id} of the migration is no longer this worker's: "
            "its claim lapsed and another worker took it",
            hint="nothing to do: the other worker copies it; a lease longer than the "
            "longest stall ([migrate] lease_s) avoids this",
        )


def _source_keys(
    hub: Hub, migration_id: int, source: str, target: str, batch: list[Any]
) -> dict[str, SourceKey]:
    """How the hub recorded each of ``batch``'s objects on ``source`` (format, data key);
    for an object whose record a cutover moved to the target (its copy there is to be
    made again), what the migration kept of its source copy."""
    found: dict[str, SourceKey] = {}
    with hub.read() as session:
        src = get_location(session, source)
        dst = get_location(session, target)
        for part in _chunks([row.key for row in batch]):
            for key, fmt, data_key in session.execute(
                select(StoredObject.key, StoredObject.format, DataKey)
                .outerjoin(DataKey, DataKey.id == StoredObject.data_key_id)
                .where(StoredObject.location_id == src.id, StoredObject.key.in_(part))
            ).all():
                found[key] = source_key(fmt, data_key)
            moved = list(
                session.scalars(
                    select(StoredObject.key).where(
                        StoredObject.location_id == dst.id,
                        StoredObject.key.in_([key for key in part if key not in found]),
                    )
                )
            )
            if not moved:
                continue
            for key, key_id in session.execute(
                select(MigrationObject.key, MigrationObject.source_key_id).where(
                    MigrationObject.migration_id == migration_id,
                    MigrationObject.key.in_(moved),
                    MigrationObject.copy_sha256.is_not(None),  # copied once: known
                )
            ).all():
                if key_id is None:
                    found[key] = source_key("parquet", None)
                else:
                    found[key] = source_key("envelope", session.get(DataKey, key_id))
    return found


def _ended(ended: queue.SimpleQueue[Future[Outcome]], timeout: float) -> list[Future[Outcome]]:
    """The copies that have ended: waits up to ``timeout`` for the first one."""
    try:
        found = [ended.get(timeout=timeout)]
    except queue.Empty:
        return []
    with contextlib.suppress(queue.Empty):
        while True:
            found.append(ended.get_nowait())
    return found


#: Outcomes are committed in groups of this many, or at least every this many seconds.
_RECORD_EVERY = 64
_RECORD_AFTER_S = 1.0


def run_migration(
    hub: Hub,
    principal: Principal,
    migration_id: int,
    *,
    wave: int | None = None,
    concurrency: int | None = None,
    join: bool = False,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Copy the plan's objects that are not copied yet (of ``wave`` only, if given),
    ``concurrency`` at once. ``join``: copy alongside other workers already at it
    (otherwise their live claims make this refuse).

    Once ``stop`` is set (``hdh migrate run`` sets it on Ctrl-C) the run ends early and
    cleanly: no copy begins, those under way end at their next part, what they did is
    recorded, and the result says ``stopped``."""
    settings = hub.settings.migrate
    k = settings.concurrency if concurrency is None else concurrency
    if not 1 <= k <= 64:
        raise InvalidInput(
            f"--concurrency {k} is out of range", hint="copy 1 to 64 objects at once"
        )
    info = migration_info(hub, principal, migration_id)
    if info.status in ("decommissioned", "decommissioning", "cancelled"):
        raise Conflict(f"migration {migration_id} is {info.status}", hint="nothing to copy")
    if wave is not None and wave not in {w["wave"] for w in info.waves}:
        raise InvalidInput(
            f"migration {migration_id} has no wave {wave}",
            hint=f"its waves are 1 to {len(info.waves)}",
        )
    _release_lapsed(hub, migration_id)
    me, run_id = this_worker(), uuid.uuid4().hex
    with hub.read() as session:
        others = [w for w in _live_workers(session, migration_id, settings.lease_s) if w != me]
        scope = [MigrationObject.migration_id == migration_id]
        if wave is not None:
            scope.append(MigrationObject.wave == wave)
        skipped = session.scalar(
            select(func.count()).where(*scope, MigrationObject.state == "copied")
        )
        todo_objects, todo_bytes = session.execute(
            select(func.count(), func.coalesce(func.sum(MigrationObject.size), 0)).where(
                *scope, MigrationObject.state != "copied"
            )
        ).one()
    if others and not join:
        raise Conflict(
            f"migration {migration_id} is being copied by {', '.join(others)}",
            hint="wait for it to finish, or add --worker to copy alongside it",
        )
    source, target = _backends(hub, info)
    if target.resumable is not None and todo_objects:
        threading.Thread(target=target.resumable.warm, name="hdh-warm", daemon=True).start()
    result = RunResult(skipped=int(skipped or 0), worker=me)
    began = time.monotonic()
    done = 0
    pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="hdh-migrate")
    inflight: dict[Future[Outcome], Any] = {}
    # Copies hand themselves in as they end: waiting on this costs the same however
    # many are in flight (``wait`` on all of them would look at each, each time).
    ended: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
    finished: list[tuple[Any, Outcome]] = []
    # Set when the run stops before the end (``stop``, an error): copies under way stop
    # at their next part, and none begins.
    stopping = stop if stop is not None else threading.Event()

    def take(row: Any, outcome: Outcome) -> None:
        nonlocal done
        finished.append((row, outcome))
        if outcome.state == "stopped":
            return  # still to be copied: the next run takes it
        done += 1
        if outcome.state == "copied":
            result.copied += 1
            result.bytes += row.size
        elif outcome.state == "corrupt":
            result.corrupt.append(row.key)
        else:
            result.failed.append(row.key)
        if progress is not None:
            progress(done, result.bytes, int(todo_objects), int(todo_bytes))

    recorded_at = time.monotonic()
    more = True
    completed = False  # not cut short by an error
    try:
        with hub.transaction() as session:
            _get(session, migration_id).status = "running"
        while True:
            if stopping.is_set():  # told to stop: the copies under way end below
                result.stopped = True
                break
            # Keep the copies going: claim the next batch before this one runs dry.
            if more and len(inflight) < 2 * k:
                claimed = _claim(hub, migration_id, wave, run_id, me, 2 * k)
                more = bool(claimed)
                # Not one still being copied: its claim lapsed (this process stalled
                # past the lease), went to another run, and came back.
                busy = {row.id for row in inflight.values()}
                batch = [row for row in claimed if row.id not in busy]
                recorded = (
                    _source_keys(hub, migration_id, info.source, info.target, batch)
                    if info.rekey
                    else {}
                )
                for row in batch:
                    rekey = (
                        partial(rekey_copy, hub.keys, recorded.get(row.key), stopping=stopping)
                        if info.rekey
                        else None
                    )
                    future = pool.submit(
                        copy_object, source, target, row.key, row.size, row.sha256,
                        retries=settings.retries, backoff_s=settings.backoff_s,
                        resume=Resume(row.upload_id, partial(_keep_upload, hub, run_id, row.id)),
                        rekey=rekey, stopping=stopping,
                    )  # fmt: skip
                    inflight[future] = row
                    future.add_done_callback(ended.put)
            if not inflight:
                break
            for future in _ended(ended, _RECORD_AFTER_S):
                take(inflight.pop(future), future.result())
            if (
                len(finished) >= _RECORD_EVERY
                or time.monotonic() - recorded_at >= _RECORD_AFTER_S
                or not inflight
            ):
                _record(
                    hub, principal, migration_id, finished, me, run_id, info.source, info.target
                )
                recorded_at = time.monotonic()
        completed = True
    finally:
        _wind_down(hub, principal, migration_id, info, me, run_id, pool, inflight, stopping, take)
        _record(hub, principal, migration_id, finished, me, run_id, info.source, info.target)
        result.seconds = time.monotonic() - began
        stopped = result.stopped or not completed
        _end_run(hub, principal, migration_id, wave, me, run_id, result, k, stopped)
    return result


def _wind_down(
    hub: Hub,
    principal: Principal,
    migration_id: int,
    info: MigrationInfo,
    me: str,
    run_id: str,
    pool: ThreadPoolExecutor,
    inflight: dict[Future[Outcome], Any],
    stopping: threading.Event,
    take: Callable[[Any, Outcome], None],
) -> None:
    """Let the copies under way end (at their next part: ``stopping``; those not begun
    are dropped) while their claims are renewed, so that no other worker takes and
    writes those objects meanwhile; then hand over what they did."""
    if any(not f.done() for f in inflight):
        stopping.set()
    for future in inflight:
        future.cancel()
    while not all(f.done() for f in inflight):
        wait(inflight, timeout=_RECORD_AFTER_S)
        with contextlib.suppress(Exception):  # the database may be what failed
            _record(hub, principal, migration_id, [], me, run_id, info.source)
    pool.shutdown(wait=True)
    # What finished is kept even when the run stops on an error or Ctrl-C.
    for future, row in inflight.items():
        if future.done() and not future.cancelled() and future.exception() is None:
            take(row, future.result())


def _end_run(
    hub: Hub,
    principal: Principal,
    migration_id: int,
    wave: int | None,
    me: str,
    run_id: str,
    result: RunResult,
    k: int,
    stopped: bool,
) -> None:
    """Release this run's claims, bring the migration's status up to date and audit the run."""
    settings = hub.settings.migrate
    with hub.transaction() as session:
        session.execute(  # this run's claims only: another run may share ``me``
            update(MigrationObject)
            .where(MigrationObject.claimed_by == me, MigrationObject.last_run == run_id)
            .values(claimed_by=None, claimed_at=None)
            .execution_options(synchronize_session=False)
        )
        migration = _get(session, migration_id)
        _refresh(session, migration, settings.lease_s)
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.run",
            object_type="migration",
            object_id=str(migration_id),
            outcome="failure" if result.corrupt or result.failed else "success",
            details={
                "wave": wave, "copied": result.copied, "bytes": result.bytes,
                "corrupt": len(result.corrupt), "failed": len(result.failed),
                "seconds": round(result.seconds, 3), "status": migration.status,
                "worker": me, "concurrency": k, "stopped": stopped,
            },
        )  # fmt: skip


def verify_migration(
    hub: Hub,
    principal: Principal,
    migration_id: int,
    *,
    full: bool = False,
    waves: list[int] | None = None,
) -> VerifyResult:
    """List the target and compare it with the plan (``full``: re-read every byte; only
    the objects of ``waves``, if given). What the target lacks or alters is set back to
    pending: the next run copies it."""
    import hashlib

    info = migration_info(hub, principal, migration_id)
    _, target = _backends(hub, info)
    switched = {w["wave"] for w in info.waves if w["state"] == "cut over"}
    with hub.read() as session:
        dst = get_location(session, info.target)
        recorded = set(
            session.scalars(select(StoredObject.key).where(StoredObject.location_id == dst.id))
        )
        # A re-keyed copy is checked against what was written, not against the source.
        planned = {
            key: (copy_size, copy_sha) if state == "copied" and copy_sha else (size, sha)
            for key, size, sha, wave, state, copy_size, copy_sha in session.execute(
                select(
                    MigrationObject.key, MigrationObject.size, MigrationObject.sha256,
                    MigrationObject.wave, MigrationObject.state, MigrationObject.copy_size,
                    MigrationObject.copy_sha256,
                ).where(MigrationObject.migration_id == migration_id)
            ).all()
            # Once a wave is switched the hub may delete its objects (a rebuilt
            # extract, an erasure): those are gone, not missing.
            if (wave not in switched or key in recorded) and (waves is None or wave in waves)
        }  # fmt: skip
    listed = {item.key: item.size for item in target.list()}
    result = VerifyResult(checked=len(planned))
    for key, (size, sha) in sorted(planned.items()):
        if key not in listed:
            result.missing.append(key)
        elif listed[key] != size:
            result.wrong_size.append(key)
        elif full:
            digest = hashlib.sha256()
            try:
                for chunk in target.open(key):
                    digest.update(chunk)
            except ObjectNotFound:
                result.missing.append(key)
                continue
            if digest.hexdigest() != sha:
                result.wrong_hash.append(key)
    if waves is None:
        result.extra = sorted(set(listed) - set(planned) - recorded)
    bad = result.missing + result.wrong_size + result.wrong_hash
    with hub.transaction() as session:
        for part in _chunks(bad):
            session.execute(
                update(MigrationObject)
                .where(MigrationObject.migration_id == migration_id, MigrationObject.key.in_(part))
                .values(state="pending", error="not found as planned on the target by verify")
                .execution_options(synchronize_session=False)
            )
        migration = _get(session, migration_id)
        _refresh(session, migration, hub.settings.migrate.lease_s)
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


# -- cutover ------------------------------------------------------------------------


def _record_keys(session: Session, project_names: dict[int, str]) -> Iterator[Any]:
    """Every record that names a location: (model, id, location column value, its
    object keys, the wave label it belongs to)."""
    from hdh.airlock.models import ExportFile, ExportRequest
    from hdh.catalog.models import DatasetVersion
    from hdh.governance.models import Job, ProjectExtract, ProjectTable

    for version in session.scalars(select(DatasetVersion)):
        keys = [p["key"] for p in version.manifest.get("parts", [])]
        held = (version.manifest.get("validation") or {}).get("quarantine")
        if held:
            keys.append(held["key"])
        linked = version.manifest.get("pseudonym_links")
        if linked:
            keys.append(linked["key"])
        yield DatasetVersion, version.id, version.location_id, keys, "datasets"
    for table in session.scalars(select(ProjectTable)):
        label = f"project {project_names.get(table.project_id)}"
        yield ProjectTable, table.id, table.location_id, [table.key], label
    for extract in session.scalars(select(ProjectExtract)):
        label = f"project {project_names.get(extract.project_id)}"
        yield (
            ProjectExtract,
            extract.id,
            extract.location_id,
            [p["key"] for p in extract.parts],
            label,
        )
    for job in session.scalars(select(Job)):
        keys = [o["key"] for o in job.outputs] + ([job.log_key] if job.log_key else [])
        yield Job, job.id, job.location, keys, f"project {project_names.get(job.project_id)}"
    files: dict[int, list[str]] = {}
    for request_id, key, released in session.execute(
        select(ExportFile.request_id, ExportFile.key, ExportFile.released_key)
    ).all():
        files.setdefault(request_id, []).extend([key] + ([released] if released else []))
    for request in session.scalars(select(ExportRequest)):
        label = f"project {project_names.get(request.project_id)}"
        yield ExportRequest, request.id, request.location, files.get(request.id, []), label


def _changed(session: Session, statement: Any) -> int:
    done = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], done).rowcount)


def _move_records(
    session: Session,
    *,
    keys: set[str],
    labels: set[str],
    from_id: int,
    to_id: int,
    from_name: str,
    to_name: str,
) -> dict[str, int]:
    """Point at ``to`` the objects ``keys`` and every record on ``from`` whose objects
    are all among them (a record without objects goes with its wave's label)."""
    from hdh.governance.models import Project

    moved: dict[str, int] = {"objects": 0}
    for part in _chunks(sorted(keys)):
        moved["objects"] += _changed(
            session,
            update(StoredObject)
            .where(StoredObject.location_id == from_id, StoredObject.key.in_(part))
            .values(location_id=to_id),
        )
    names = dict(session.execute(select(Project.id, Project.name)).all())
    chosen: dict[Any, list[int]] = {}
    for model, record_id, where, record_keys, label in list(_record_keys(session, names)):
        if where not in (from_id, from_name):
            continue
        if (record_keys and set(record_keys) <= keys) or (not record_keys and label in labels):
            chosen.setdefault(model, []).append(record_id)
    for model, ids in chosen.items():
        column = "location_id" if hasattr(model, "location_id") else "location"
        value = to_id if column == "location_id" else to_name
        count = 0
        for part in _chunks(ids):
            statement = update(model).where(model.id.in_(part)).values({column: value})
            count += _changed(session, statement)
        moved[model.__tablename__] = count
    return moved


@dataclass(frozen=True)
class _Swap:
    """One re-keyed object's record, switched from one copy's values to the other's."""

    from_sha: str
    to_size: int
    to_sha: str
    #: The data key of the copy switched to (envelope objects; None for Parquet).
    to_key: str | None
    #: The KEK versions wrapping the keys of the copy switched to (Parquet files).
    to_keks: dict[str, int] | None


def _swaps(
    session: Session, migration_id: int, waves: list[int], *, back: bool
) -> dict[str, _Swap]:
    """The re-keyed copies of ``waves``: to switch to (``back``: from) the copies."""
    found = {}
    for row in session.execute(
        select(
            MigrationObject.key, MigrationObject.size, MigrationObject.sha256,
            MigrationObject.copy_size, MigrationObject.copy_sha256, MigrationObject.copy_key_id,
            MigrationObject.source_key_id, MigrationObject.copy_keks, MigrationObject.source_keks,
        ).where(
            MigrationObject.migration_id == migration_id, MigrationObject.wave.in_(waves),
            MigrationObject.copy_sha256.is_not(None),
        )
    ).all():  # fmt: skip
        if back:
            found[row.key] = _Swap(
                row.copy_sha256, row.size, row.sha256, row.source_key_id, row.source_keks
            )
        else:
            found[row.key] = _Swap(
                row.sha256, row.copy_size, row.copy_sha256, row.copy_key_id, row.copy_keks
            )
    return found


def _swap_entry(entry: dict[str, Any], swaps: dict[str, _Swap]) -> bool:
    """Switch one ``{"key", "size", "sha256"}`` entry of a record (a manifest's part, an
    extract's part); ``first_sha256`` keeps the SHA-256 the object had when written,
    which names its content (extract fingerprints) whatever keys it is under now."""
    swap = swaps.get(str(entry.get("key")))
    if swap is None or entry.get("sha256") != swap.from_sha:
        return False
    first = entry.get("first_sha256", entry["sha256"])
    entry["size"], entry["sha256"] = swap.to_size, swap.to_sha
    if first == swap.to_sha:
        entry.pop("first_sha256", None)
    else:
        entry["first_sha256"] = first
    if swap.to_keks is not None:
        entry["kek_versions"] = swap.to_keks
    else:
        entry.pop("kek_versions", None)
    return True


def _swap_records(session: Session, location_id: int, swaps: dict[str, _Swap]) -> int:
    """Point the records of re-keyed objects (now on ``location_id``) at the other
    copy's size, SHA-256 and keys: object records, manifests' parts, quarantines and
    links, extracts' parts, saved tables. Each entry is switched only while it still
    holds the values switched from (an object written again since is left alone)."""
    from hdh.catalog.models import DatasetVersion
    from hdh.governance.models import ProjectExtract, ProjectTable

    if not swaps:
        return 0
    switched = 0
    for part in _chunks(sorted(swaps)):
        for row in session.scalars(
            select(StoredObject).where(
                StoredObject.location_id == location_id, StoredObject.key.in_(part)
            )
        ):
            swap = swaps[row.key]
            if row.sha256 != swap.from_sha:
                continue
            row.size, row.sha256 = swap.to_size, swap.to_sha
            if swap.to_key is not None:
                row.data_key_id = swap.to_key
            switched += 1
    # Locked (PostgreSQL): two workers making copies again must not each rewrite a
    # manifest from what it read before the other's change.
    for version in session.scalars(select(DatasetVersion).with_for_update()):
        manifest = copy.deepcopy(version.manifest)
        entries = list(manifest.get("parts", []))
        for held in (
            (manifest.get("validation") or {}).get("quarantine"),
            manifest.get("pseudonym_links"),
        ):
            if held:
                entries.append(held)
        switched_here = [_swap_entry(entry, swaps) for entry in entries]  # every one
        if any(switched_here):
            version.manifest = manifest
    for extract in session.scalars(select(ProjectExtract).with_for_update()):
        parts = copy.deepcopy(extract.parts)
        switched_here = [_swap_entry(entry, swaps) for entry in parts]
        if any(switched_here):
            extract.parts = parts
    for table in session.scalars(select(ProjectTable).with_for_update()):
        found = swaps.get(table.key)
        if found is not None and table.sha256 == found.from_sha:
            table.size, table.sha256 = found.to_size, found.to_sha
            table.kek_versions = found.to_keks
    session.flush()
    return switched


def _take_delta(
    hub: Hub, migration_id: int, source: str, source_backend: Backend, target: Backend
) -> int:
    """Add to the plan what was written to the source since (new keys, or objects
    written again), each in the wave of its area (a new wave if the area is new), and
    take out of the plan what the hub deleted meanwhile, from the source or, once its
    wave was switched, from the target: its copy on the other side, if any, is deleted
    too (no decommission will see it), and the keys of both are destroyed."""
    orphans: list[str] = []
    source_orphans: list[str] = []
    dropped_keys: list[str] = []
    with hub.transaction() as session:
        migration = _get(session, migration_id)
        src = get_location(session, source)
        planned = {
            row.key: row
            for row in session.scalars(
                select(MigrationObject).where(MigrationObject.migration_id == migration_id)
            )
        }
        waves = [dict(w) for w in migration.waves]
        by_label = {w["what"]: w for w in waves}
        count = 0
        for key, size, sha in session.execute(
            select(StoredObject.key, StoredObject.size, StoredObject.sha256).where(
                StoredObject.location_id == src.id
            )
        ).all():
            known = planned.get(key)
            if known is not None and known.sha256 == sha:
                continue
            label = wave_label(key)[1]
            if label not in by_label:
                by_label[label] = _wave_entry(len(waves) + 1, label, 0, 0)
                waves.append(by_label[label])
            entry = by_label[label]
            if known is None:
                session.add(
                    MigrationObject(
                        migration_id=migration_id, wave=entry["wave"], key=key, size=size,
                        sha256=sha, state="pending", attempts=0, error="",
                    )
                )  # fmt: skip
                entry["objects"] += 1
                entry["bytes"] += size
                migration.objects += 1
                migration.bytes += size
            else:
                entry["bytes"] += size - known.size
                migration.bytes += size - known.size
                known.size, known.sha256, known.state = size, sha, "pending"
                known.error = "written again on the source since it was copied"
            if entry["state"] == "cut over":
                entry["state"] = "planned"
            count += 1
        on_source = set(
            session.scalars(select(StoredObject.key).where(StoredObject.location_id == src.id))
        )
        # What an earlier cutover of this migration moved is recorded on the target:
        # not gone, even when its wave was reopened by a late write.
        dst = get_location(session, migration.target)
        on_target = set(
            session.scalars(select(StoredObject.key).where(StoredObject.location_id == dst.id))
        )
        for key, row in planned.items():
            if key in on_source or key in on_target:
                continue
            entry = next(w for w in waves if w["wave"] == row.wave)
            entry["objects"] -= 1
            entry["bytes"] -= row.size
            migration.objects -= 1
            migration.bytes -= row.size
            if row.state == "copied":
                orphans.append(key)
            source_orphans.append(key)  # gone from the source already, or left behind
            dropped_keys += [k for k in (row.copy_key_id, row.source_key_id) if k is not None]
            session.delete(row)
            count += 1
        migration.waves = waves
        session.flush()
        _destroy_keys(session, dropped_keys)
    for key in orphans:
        target.delete(key)
    for key in source_orphans:
        source_backend.delete(key)
    return count


def cutover(
    hub: Hub, principal: Principal, migration_id: int, *, wave: int | None = None
) -> dict[str, int]:
    """Switch ``wave`` (every wave not yet switched, if None) to the target: first record
    and copy what was written to the source since the plan (the delta), then, in one
    transaction, point the wave's objects and records at the target. Refused while one
    of its objects is not copied, or if the source changed during the switch. The
    source is left as it is (``rollback`` switches back)."""
    info = migration_info(hub, principal, migration_id)
    if info.status in ("decommissioned", "decommissioning", "cancelled"):
        raise Conflict(f"migration {migration_id} is {info.status}", hint="nothing to switch")
    if wave is not None and wave not in {w["wave"] for w in info.waves}:
        raise InvalidInput(
            f"migration {migration_id} has no wave {wave}",
            hint=f"its waves are 1 to {len(info.waves)}",
        )
    delta = _take_delta(hub, migration_id, info.source, *_backends(hub, info))
    info = migration_info(hub, principal, migration_id)
    chosen = (
        [wave] if wave is not None else [w["wave"] for w in info.waves if w["state"] != "cut over"]
    )
    for number in chosen:
        run_migration(hub, principal, migration_id, wave=number, join=True)
    if info.rekey:
        # The records are about to name each copy's keys: every copy is read again and
        # must be the one recorded (a worker stalled past its lease could have written
        # over it with a copy of its own, under a key never recorded).
        checked = verify_migration(hub, principal, migration_id, full=True, waves=chosen)
        if not checked.ok:
            for number in chosen:
                run_migration(hub, principal, migration_id, wave=number, join=True)
    with hub.transaction() as session:
        migration = _get(session, migration_id)
        src, dst = get_location(session, info.source), get_location(session, info.target)
        rows = session.execute(
            select(MigrationObject.key, MigrationObject.sha256, MigrationObject.state).where(
                MigrationObject.migration_id == migration_id, MigrationObject.wave.in_(chosen)
            )
        ).all()
        not_copied = [r.key for r in rows if r.state != "copied"]
        if not_copied:
            raise Conflict(
                f"{len(not_copied)} object(s) of the wave(s) are not copied "
                f"(first: {not_copied[0]}): cutover refused",
                hint="see hdh migrate status, repair what is reported and run "
                "hdh migrate run again",
            )
        keys = {r.key: r.sha256 for r in rows}
        labels = {w["what"] for w in migration.waves if w["wave"] in chosen}
        changed = [
            key
            for key, sha in session.execute(
                select(StoredObject.key, StoredObject.sha256).where(
                    StoredObject.location_id == src.id
                )
            ).all()
            if wave_label(key)[1] in labels and keys.get(key) != sha
        ]
        if changed:
            raise Conflict(
                f"{len(changed)} object(s) were written to {info.source!r} during the cutover",
                hint="run hdh migrate cutover again",
            )
        # Keys of the wave already switched by an earlier cutover are on the target by
        # design; only those still on the source would clash.
        on_source = set(
            session.scalars(select(StoredObject.key).where(StoredObject.location_id == src.id))
        )
        clash = 0
        for part in _chunks(sorted(set(keys) & on_source)):
            clash += (
                session.scalar(
                    select(func.count()).where(
                        StoredObject.location_id == dst.id, StoredObject.key.in_(part)
                    )
                )
                or 0
            )
        if clash:
            raise Conflict(
                f"{clash} object(s) of the plan are already recorded on {info.target!r}",
                hint="the target must not hold the hub's objects under the same keys",
            )
        moved = _move_records(
            session, keys=set(keys), labels=labels, from_id=src.id, to_id=dst.id,
            from_name=info.source, to_name=info.target,
        )  # fmt: skip
        if migration.rekey:
            swaps = _swaps(session, migration_id, chosen, back=False)
            moved["rekeyed_objects"] = _swap_records(session, dst.id, swaps)
        now = audit.utc_timestamp()
        migration.waves = [
            {**w, "state": "cut over", "cut_over_at": now} if w["wave"] in chosen else w
            for w in migration.waves
        ]
        _refresh(session, migration, hub.settings.migrate.lease_s)
        if migration.status == "cut over":
            migration.cut_over_at = now
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.cutover",
            object_type="migration",
            object_id=str(migration_id),
            details={"waves": chosen, "delta": delta, "moved": moved},
        )
    return {"delta": delta, **moved}


def rollback(
    hub: Hub, principal: Principal, migration_id: int, *, wave: int | None = None
) -> dict[str, int]:
    """Switch ``wave`` (every switched wave, if None) back to the source. Refused when
    objects were written to the target in its area since (they are not on the source)."""
    info = migration_info(hub, principal, migration_id)
    switched = [w["wave"] for w in info.waves if w["state"] == "cut over"]
    chosen = switched if wave is None else [wave]
    if (
        info.status in ("decommissioned", "decommissioning")
        or not switched
        or not set(chosen) <= set(switched)
    ):
        raise Conflict(
            f"migration {migration_id} has no such wave cut over ({info.status})",
            hint="nothing to undo",
        )
    with hub.transaction() as session:
        migration = _get(session, migration_id)
        src, dst = get_location(session, info.source), get_location(session, info.target)
        planned = set(
            session.scalars(
                select(MigrationObject.key).where(MigrationObject.migration_id == migration_id)
            )
        )
        keys = set(
            session.scalars(
                select(MigrationObject.key).where(
                    MigrationObject.migration_id == migration_id,
                    MigrationObject.wave.in_(chosen),
                )
            )
        )
        labels = {w["what"] for w in migration.waves if w["wave"] in chosen}
        newer = [
            key
            for key in session.scalars(
                select(StoredObject.key).where(StoredObject.location_id == dst.id)
            )
            if key not in planned and wave_label(key)[1] in labels
        ]
        if newer:
            raise Conflict(
                f"{len(newer)} object(s) were written to {info.target!r} since the cutover "
                f"and are not on {info.source!r}",
                hint="plan a migration back instead of rolling back",
            )
        moved = _move_records(
            session, keys=keys, labels=labels, from_id=dst.id, to_id=src.id,
            from_name=info.target, to_name=info.source,
        )  # fmt: skip
        if migration.rekey:
            swaps = _swaps(session, migration_id, chosen, back=True)
            moved["rekeyed_objects"] = _swap_records(session, src.id, swaps)
        migration.waves = [
            {**w, "state": "planned", "cut_over_at": None} if w["wave"] in chosen else w
            for w in migration.waves
        ]
        migration.cut_over_at = None
        _refresh(session, migration, hub.settings.migrate.lease_s)
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.rollback",
            object_type="migration",
            object_id=str(migration_id),
            details={"waves": chosen, "moved": moved},
        )
    return moved


def decommission(hub: Hub, principal: Principal, migration_id: int) -> dict[str, int]:
    """Delete the source copies of a migration whose every wave is cut over, once the
    target lists every object as planned and the grace period has passed. Objects the
    hub still records on the source (written since) are kept."""
    info = migration_info(hub, principal, migration_id)
    resuming = info.status == "decommissioning"  # an earlier attempt stopped midway
    if (info.status != "cut over" and not resuming) or info.cut_over_at is None:
        raise Conflict(
            f"migration {migration_id} is {info.status}: only a migration cut over in "
            "every wave can be decommissioned",
            hint=f"hdh migrate cutover {migration_id} first",
        )
    grace = timedelta(days=hub.settings.migrate.grace_days)
    after = datetime.fromisoformat(info.cut_over_at.replace("Z", "+00:00")) + grace
    if datetime.now(UTC) < after:
        raise Conflict(
            f"the grace period after the cutover of migration {migration_id} runs until "
            f"{after.isoformat(timespec='seconds')}",
            hint="decommission after that date ([migrate] grace_days in hub.toml)",
        )
    # A re-keying migration is about to destroy the source's keys: every copy is read
    # again first and must be the one the records name.
    checked = verify_migration(hub, principal, migration_id, full=info.rekey)
    if not checked.ok:
        raise Conflict(
            f"the target does not hold every object of migration {migration_id} "
            f"({len(checked.missing)} missing, {len(checked.wrong_size)} of the wrong size, "
            f"{len(checked.wrong_hash)} with another SHA-256)",
            hint=f"hdh migrate run {migration_id}, then decommission again",
        )
    source, _ = _backends(hub, info)
    with hub.transaction() as session:
        # From here on no rollback: the source copies are about to go.
        _get(session, migration_id).status = "decommissioning"
    with hub.read() as session:
        src = get_location(session, info.source)
        planned = list(
            session.scalars(
                select(MigrationObject.key).where(MigrationObject.migration_id == migration_id)
            )
        )
        still_here = set(
            session.scalars(select(StoredObject.key).where(StoredObject.location_id == src.id))
        )
    deleted = 0
    for key in planned:
        if key in still_here:
            continue
        source.delete(key)
        deleted += 1
    with hub.transaction() as session:
        # A re-keying migration's source copies were under keys of their own: destroyed
        # with them, so that a copy the old provider kept anyway no longer opens.
        mine = [
            k
            for k in session.scalars(
                select(MigrationObject.source_key_id).where(
                    MigrationObject.migration_id == migration_id,
                    MigrationObject.source_key_id.is_not(None),
                )
            )
            if k is not None
        ]
        session.execute(
            update(MigrationObject)
            .where(MigrationObject.migration_id == migration_id)
            .values(source_key_id=None)
            .execution_options(synchronize_session=False)
        )
        destroyed = _destroy_keys(session, mine)
        migration = _get(session, migration_id)
        migration.decommissioned_at = audit.utc_timestamp()
        _refresh(session, migration, hub.settings.migrate.lease_s)
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.decommission",
            object_type="migration",
            object_id=str(migration_id),
            details={
                "source": info.source,
                "deleted": deleted,
                "kept": len(still_here),
                "keys_destroyed": destroyed,
            },
        )
    return {"deleted": deleted, "kept": len(still_here), "keys_destroyed": destroyed}


def cancel(hub: Hub, principal: Principal, migration_id: int) -> int:
    """Abandon a migration none of whose waves is cut over (the source stays the hub's
    only copy). The copies already on the target are left there; their number is
    returned; uploads begun and not completed are dropped with their parts. Another
    migration from the same source can then be planned."""
    info = migration_info(hub, principal, migration_id)
    if info.status in ("decommissioned", "cancelled") or any(
        w["state"] == "cut over" for w in info.waves
    ):
        raise Conflict(
            f"migration {migration_id} is {info.status}: only a migration with no wave cut "
            "over can be cancelled",
            hint="roll its waves back first (hdh migrate rollback)",
        )
    if info.workers:
        raise Conflict(
            f"migration {migration_id} is being copied by {', '.join(info.workers)}",
            hint="stop those runs first",
        )
    _drop_uploads(hub, info)
    with hub.transaction() as session:
        # The keys of re-keyed copies go: the copies left on the target no longer open.
        copies = list(
            session.scalars(
                select(MigrationObject.copy_key_id).where(
                    MigrationObject.migration_id == migration_id,
                    MigrationObject.copy_key_id.is_not(None),
                )
            )
        )
        session.execute(
            update(MigrationObject)
            .where(MigrationObject.migration_id == migration_id)
            .values(copy_key_id=None)
            .execution_options(synchronize_session=False)
        )
        _destroy_keys(session, [k for k in copies if k is not None])
        migration = _get(session, migration_id)
        migration.status = "cancelled"
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.cancel",
            object_type="migration",
            object_id=str(migration_id),
            details={"copied": info.states.get("copied", 0), "target": info.target},
        )
    return info.states.get("copied", 0)


def _drop_uploads(hub: Hub, info: MigrationInfo) -> None:
    """Abort, as far as the target answers, the uploads the migration began and did not
    complete: their parts take room, unseen, until then. An upload the target does not
    drop now is left to its own expiry (an S3 lifecycle rule); cancelling goes on."""
    with hub.read() as session:
        open_uploads = session.execute(
            select(MigrationObject.id, MigrationObject.key, MigrationObject.upload_id).where(
                MigrationObject.migration_id == info.id, MigrationObject.upload_id.is_not(None)
            )
        ).all()
        if not open_uploads:
            return
        dst = get_location(session, info.target)
    try:
        uploads = backend_for(hub, dst).resumable
    except HubError as exc:
        log.warning("uploads of migration %d left to expire on %s: %s", info.id, info.target, exc)
        return
    if uploads is None:
        return
    for object_id, key, upload_id in open_uploads:
        try:
            uploads.abort(key, str(upload_id))
        except HubError as exc:
            log.warning("upload of %r left to expire on %s: %s", key, info.target, exc)
            continue
        with hub.transaction() as session:
            _changed(
                session,
                update(MigrationObject)
                .where(MigrationObject.id == object_id, MigrationObject.upload_id == upload_id)
                .values(upload_id=None),
            )
