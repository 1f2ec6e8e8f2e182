"""Key rotation and retirement across the key provider and the database's data keys."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hdh import audit
from hdh.catalog.models import DatasetVersion
from hdh.crypto.keyfile import SENSITIVITIES
from hdh.crypto.keys import WrappedKey, check_sensitivity
from hdh.crypto.models import DataKey
from hdh.errors import Conflict, InvalidInput
from hdh.governance.models import ProjectExtract, ProjectTable
from hdh.hub import Hub
from hdh.migrate.models import Migration

BATCH = 500


@dataclass(frozen=True)
class KeyUse:
    sensitivity: str
    version: int
    created_at: str
    current: bool
    retired: bool
    data_keys: int


def key_usage(hub: Hub) -> list[KeyUse]:
    """Every KEK version and how many data keys it wraps."""
    with hub.read() as session:
        counts = {
            (s, v): n
            for s, v, n in session.execute(
                select(DataKey.sensitivity, DataKey.kek_version, func.count()).group_by(
                    DataKey.sensitivity, DataKey.kek_version
                )
            )
        }
    return [
        KeyUse(
            v.sensitivity,
            v.version,
            v.created_at,
            v.current,
            v.retired,
            counts.get((v.sensitivity, v.version), 0),
        )
        for v in hub.keys.versions()
    ]


def rotate_keys(hub: Hub, sensitivity: str | None, *, actor: str) -> dict[str, int]:
    """Add a KEK version (for one class, or all) and rewrap every data key of that class.

    Objects are not rewritten: only their wrapped data keys change, in batches, each
    batch in its own transaction. After an interruption, run it again: it adds another
    version and rewraps every key of the class under it, so all end on one version.
    """
    classes = [check_sensitivity(sensitivity)] if sensitivity else list(SENSITIVITIES)
    now = audit.utc_timestamp()
    done: dict[str, int] = {}
    for cls in classes:
        version = hub.keys.rotate(cls, created_at=now)
        rewrapped = 0
        while True:
            with hub.transaction() as session:
                batch = session.scalars(
                    select(DataKey)
                    .where(DataKey.sensitivity == cls, DataKey.kek_version != version)
                    .limit(BATCH)
                ).all()
                for row in batch:
                    old = WrappedKey(cls, row.kek_version, base64.b64decode(row.wrapped))
                    new = hub.keys.rewrap(old)
                    row.kek_version = new.kek_version
                    row.wrapped = new.to_text()
                rewrapped += len(batch)
            if len(batch) < BATCH:
                break
        with hub.transaction() as session:
            audit.record(
                session,
                actor=actor,
                action="key.rotate",
                object_type="kek",
                object_id=cls,
                details={"version": version, "rewrapped": rewrapped},
            )
        done[cls] = version
    return done


def rotate_pseudonym_secret(hub: Hub, *, actor: str) -> int:
    """Add a pseudonymisation secret version: datasets ingested from now on are
    pseudonymised under it. Earlier versions are kept: each new version also records,
    encrypted, which pseudonym under the oldest secret (the anchor) each of its
    pseudonyms stands for, so that every project keeps seeing the same pseudonym for
    the same person (see ``hdh.governance.reading``)."""
    version = hub.keys.rotate_pseudonym_secret(created_at=audit.utc_timestamp())
    with hub.transaction() as session:
        audit.record(
            session,
            actor=actor,
            action="key.rotate_pseudonyms",
            object_type="pseudonym_secret",
            object_id=str(version),
            details={"version": version, "anchor": hub.keys.pseudonym_secret_versions()[0]},
        )
    return version


def parquet_keks(manifest: dict[str, Any]) -> set[tuple[str, int]]:
    """The (class, KEK version) pairs that wrap the keys inside a dataset version's
    Parquet files: those recorded at ingestion, or, for files a re-keying migration
    wrote again, those recorded with each file."""
    files = list(manifest.get("parts") or [])
    held = (manifest.get("validation") or {}).get("quarantine")
    if held:
        files.append(held)
    found = {(c, int(v)) for f in files for c, v in (f.get("kek_versions") or {}).items()}
    if not files or any("kek_versions" not in f for f in files):
        found |= {(c, int(v)) for c, v in (manifest.get("kek_versions") or {}).items()}
    return found


def _span(hub: Hub, sensitivity: str, version: int) -> tuple[datetime, datetime]:
    """When KEK ``version`` of ``sensitivity`` was current: from its creation to the
    next version's (``datetime.max`` while still current; an unreadable time counts as
    the widest bound)."""
    made = {v.version: v.created_at for v in hub.keys.versions() if v.sensitivity == sensitivity}
    later = [_moment(at, datetime.max) for number, at in made.items() if number > version]
    return _moment(made[version], datetime.min), min(later, default=datetime.max)


def _moment(timestamp: str, otherwise: datetime) -> datetime:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        return otherwise


def _needs(
    recorded: dict[str, int] | None,
    created_at: str,
    wanted: tuple[str, int],
    span: tuple[datetime, datetime],
    classes: frozenset[str] | None = None,
) -> bool:
    """Whether a Parquet file needs KEK version ``wanted``: by the versions recorded
    with it, or, for a file written before hdh recorded them, by whether it was written
    while that version was current (give or take: see below) and uses that class
    (``classes``: those such a file can use, when known)."""
    if recorded is not None:
        return recorded.get(wanted[0]) == wanted[1]
    if classes is not None and wanted[0] not in classes:
        return False
    start, end = span
    # The time recorded is when the file was stored, after its keys were made: a file
    # stored up to a day after the next version came counts for this one too.
    return start <= _moment(created_at, start) <= min(end, datetime.max - _SLACK) + _SLACK


def retire_key(hub: Hub, sensitivity: str, version: int, *, actor: str) -> None:
    """Destroy KEK ``version`` of ``sensitivity``; refused while any data key, dataset
    version or saved table needs it. Project extracts that need it are deleted first:
    they are built again from their datasets by the next query."""
    check_sensitivity(sensitivity)
    if version == hub.keys.current_version(sensitivity):
        raise Conflict(
            f"{sensitivity} key version {version} is the current one",
            hint=f"rotate first (`hdh key rotate --class {sensitivity}`), then retire it",
        )
    known = {v.version: v for v in hub.keys.versions() if v.sensitivity == sensitivity}
    if version not in known:
        raise InvalidInput(
            f"there is no {sensitivity} key version {version}",
            hint="see the versions with `hdh key list`",
        )
    if known[version].retired:
        raise Conflict(
            f"{sensitivity} key version {version} is already retired",
            hint="see the versions with `hdh key list`",
        )
    wanted, span = (sensitivity, version), _span(hub, sensitivity, version)
    with hub.read() as session:
        _refuse_while_needed(session, sensitivity, version, span)
        extracts = [
            row.id
            for row in session.scalars(select(ProjectExtract))
            if any(_needs(p.get("kek_versions"), row.created_at, wanted, span) for p in row.parts)
        ]
    from hdh.workspace.extracts import drop_extract_ids

    dropped = drop_extract_ids(hub, extracts)
    with hub.transaction() as session:
        _refuse_while_needed(session, sensitivity, version, span)  # nothing new meanwhile
        hub.keys.retire(sensitivity, version)
        audit.record(
            session,
            actor=actor,
            action="key.retire",
            object_type="kek",
            object_id=sensitivity,
            details={"version": version, "extracts_dropped": dropped},
        )


_CLINICAL = frozenset({"clinical"})
_SLACK = timedelta(days=1)


def _refuse_while_needed(
    session: Session, sensitivity: str, version: int, span: tuple[datetime, datetime]
) -> None:
    # Its copies are under the versions current when they were made, and a rollback
    # would point the hub back at the source files, under older ones.
    moving = session.scalar(
        select(Migration.id).where(
            Migration.rekey.is_(True),
            Migration.status.not_in(("decommissioned", "decommissioning", "cancelled")),
        )
    )
    if moving is not None:
        raise Conflict(
            f"re-keying migration {moving} is not finished: its copies or the files it "
            "may roll back to can need any key version",
            hint=f"retire once it is decommissioned (hdh migrate decommission {moving}) "
            "or cancelled",
        )
    users = session.scalar(
        select(func.count())
        .select_from(DataKey)
        .where(DataKey.sensitivity == sensitivity, DataKey.kek_version == version)
    )
    datasets = sum(
        1
        for manifest in session.scalars(select(DatasetVersion.manifest))
        if (sensitivity, version) in parquet_keks(manifest)
    )
    if datasets:
        raise Conflict(
            f"{sensitivity} key version {version} still wraps the keys of {datasets} "
            f"dataset version{'s' if datasets != 1 else ''} (kept inside their Parquet files)",
            hint="keep it, or move those versions with a re-keying migration "
            "(hdh migrate plan --rekey), which writes their files again under the "
            "current keys",
        )
    tables = sum(
        1
        for row in session.scalars(select(ProjectTable))
        # (A saved table's columns are all under the clinical KEK.)
        if _needs(row.kek_versions, row.created_at, (sensitivity, version), span, _CLINICAL)
    )
    if tables:
        raise Conflict(
            f"{sensitivity} key version {version} may still wrap the keys of {tables} saved "
            f"table{'s' if tables != 1 else ''} (kept inside their Parquet files)",
            hint="keep it, or move the projects' areas with a re-keying migration "
            "(hdh migrate plan --rekey)",
        )
    if users:
        raise Conflict(
            f"{sensitivity} key version {version} still wraps {users} data key"
            f"{'s' if users != 1 else ''}",
            hint=f"run `hdh key rotate --class {sensitivity}` first, then retire it",
        )
