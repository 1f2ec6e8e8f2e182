"""Project extracts: the permitted part of a dataset version, as one project sees it.

A project's queries do not read the hub's dataset parts directly. The first query that
names a dataset builds the project's *extract* of it: the permit's columns and rows of
the permitted version, identifiers as the project's pseudonyms, people who object left
out, written as encrypted Parquet parts (Parquet Modular Encryption, the hub's keys) in
the project's area ``projects/PROJECT/extracts/`` on the version's location. Queries
then scan the extract through ``pyarrow.dataset`` with projection and filter pushdown:
no per-query pseudonym mapping, no secret in the query engine, and what the engine can
reach is exactly what the project may see.

An extract is named by a fingerprint of everything it was built from: the version and
the SHA-256 of its parts, the permit (columns, row filter) and the objections under the
version's pseudonymisation secret. A new version ("latest" permits), a changed permit,
a new objection or an erasure (which rewrites parts) changes the fingerprint, so the
next query builds a new extract and the old one is deleted. Revocation and expiry need
no rebuild: every query asks ``permits.access`` first. ``drop_extracts`` deletes a
dataset's extracts at once (erasure calls it).

Parts read for a query are checked against their recorded SHA-256; verified ciphertext
is kept in a bounded in-process cache so that repeated queries in a long-running server
do not fetch and hash it again (the plaintext is never cached).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from hdh import audit
from hdh.crypto.envelope import TamperedObject
from hdh.crypto.parquet import decryption_properties
from hdh.errors import HubError
from hdh.governance.models import ProjectExtract
from hdh.governance.objections import objected
from hdh.governance.permits import Access, access
from hdh.governance.projects import _project
from hdh.governance.reading import permitted_parts
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.ingest.service import VersionInfo, version_info
from hdh.storage.backend import Backend
from hdh.storage.locations import get_location
from hdh.storage.models import Location, StoredObject
from hdh.storage.objects import backend_for, get_verified, store_parquet

#: Bumped when the way extracts are built changes, so that old ones are rebuilt.
FORMAT = 1
ROW_GROUP = 1 << 20
#: LZ4 decodes faster than Snappy; queries scan extracts much more often than they are written.
COMPRESSION = "lz4"
#: Parts fetched and hashed at once (hashing releases the GIL).
FETCHES = 4
CACHE_BYTES = 1 << 30

log = logging.getLogger(__name__)


@dataclass
class Extract:
    """A project's extract of one dataset, ready to scan."""

    dataset: str
    version: int
    access: Access
    rows: int
    columns: list[str]
    scan: ds.Dataset
    #: Seconds spent building it in this call (0 when it already existed).
    built_s: float = 0.0


def fingerprint(hub: Hub, allowed: Access, chosen: VersionInfo) -> str:
    secret_version = chosen.manifest.get("pseudonym_secret_version")
    objections = sorted(objected(hub, int(secret_version))) if secret_version is not None else []
    basis = {
        "format": FORMAT,
        "dataset": chosen.dataset,
        "version": chosen.number,
        # The bytes first written name a part's content, whatever keys it is under now.
        "parts": [p.get("first_sha256", p["sha256"]) for p in chosen.manifest["parts"]],
        "permit": allowed.permit,
        "columns": list(allowed.columns),
        "row_filter": allowed.row_filter,
        "objections": hashlib.sha256("\n".join(objections).encode()).hexdigest(),
    }
    linked = chosen.manifest.get("pseudonym_links")
    if linked:
        basis["links"] = linked.get("first_sha256", linked["sha256"])
        anchored = "\n".join(sorted(objected(hub, int(linked["anchor_version"]))))
        basis["anchor_objections"] = hashlib.sha256(anchored.encode()).hexdigest()
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def extract_for(
    hub: Hub, principal: Principal, project: str, dataset: str, *, purpose: str = ""
) -> Extract:
    """``project``'s extract of ``dataset``, built when missing or stale; PermissionDenied
    (audited) without a usable permit. The read is audited (``data.read``)."""
    allowed = access(hub, principal, project, dataset, purpose=purpose)
    chosen = version_info(hub, dataset, allowed.version)
    wanted = fingerprint(hub, allowed, chosen)
    began = time.monotonic()
    built = False
    row = _find(hub, project, dataset, wanted)
    if row is None:
        row = _build(hub, project, allowed, chosen, wanted)
        built = True
    location, parts, rows, columns = row
    backend = backend_for(hub, location)
    scan = _scan(hub, backend, location, parts, _few_values(chosen, columns))
    with hub.transaction() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="data.read",
            object_type="dataset_version",
            object_id=f"{dataset}@{chosen.number}",
            details={
                "project": project,
                "permit": allowed.permit,
                "columns": columns,
                "extract_rows": rows,
                **({"extract_built": True} if built else {}),
                **({"purpose": purpose} if purpose else {}),
            },
        )
    return Extract(
        dataset, chosen.number, allowed, rows, columns, scan,
        time.monotonic() - began if built else 0.0,
    )  # fmt: skip


_Row = tuple[Location, list[dict[str, Any]], int, list[str]]


def _find(hub: Hub, project: str, dataset: str, wanted: str) -> _Row | None:
    with hub.read() as session:
        owner = _project(session, project)
        row = session.scalar(
            select(ProjectExtract).where(
                ProjectExtract.project_id == owner.id,
                ProjectExtract.dataset == dataset,
                ProjectExtract.fingerprint == wanted,
            )
        )
        if row is None:
            return None
        location = session.get(Location, row.location_id)
        assert location is not None
        session.expunge(location)
        return location, list(row.parts), row.rows, list(row.columns)


def _build(hub: Hub, project: str, allowed: Access, chosen: VersionInfo, wanted: str) -> _Row:
    with hub.read() as session:
        location = get_location(session, chosen.location)
    backend = backend_for(hub, location)
    prefix = f"projects/{project}/extracts/{chosen.dataset}/{wanted[:16]}-{uuid.uuid4().hex[:8]}"
    parts: list[dict[str, Any]] = []
    columns = list(allowed.columns)
    try:
        for number, table in enumerate(permitted_parts(hub, project, allowed, chosen)):
            if number and not table.num_rows:
                continue
            key = f"{prefix}/part-{number:05d}.parquet"
            stored = store_parquet(
                hub, backend, key, table, _sensitivity(chosen, columns),
                compression=COMPRESSION, row_group_size=ROW_GROUP,
            )  # fmt: skip
            parts.append(
                {
                    "key": key, "size": stored.size, "sha256": stored.sha256,
                    "rows": table.num_rows, "kek_versions": stored.keks,
                }
            )  # fmt: skip
        rows = sum(p["rows"] for p in parts)
        now = audit.utc_timestamp()
        with hub.transaction() as session:
            owner = _project(session, project)
            for part in parts:
                session.add(
                    StoredObject(
                        location_id=location.id, key=part["key"], size=part["size"],
                        sha256=part["sha256"], plain_size=0, data_class="health",
                        format="parquet", data_key_id=None, created_at=now,
                    )
                )  # fmt: skip
            session.add(
                ProjectExtract(
                    project_id=owner.id, dataset=chosen.dataset, version=chosen.number,
                    fingerprint=wanted, location_id=location.id, parts=parts, rows=rows,
                    columns=columns, created_at=now,
                )
            )  # fmt: skip
    except IntegrityError:
        # Another query built the same extract at the same time: use that one.
        _delete_objects(backend, parts)
        found = _find(hub, project, chosen.dataset, wanted)
        assert found is not None
        return found
    except BaseException:
        _delete_objects(backend, parts)
        raise
    _drop(hub, project=project, dataset=chosen.dataset, keep=wanted)
    return location, parts, rows, columns


def _sensitivity(chosen: VersionInfo, columns: list[str]) -> dict[str, str]:
    """Each column under the key class it has in the version (pseudonyms stay under
    the identifiers KEK)."""
    classes = chosen.manifest.get("column_keys", {})
    return {c: classes.get(c, "clinical") for c in columns}


def drop_extracts(hub: Hub, dataset: str) -> int:
    """Delete every project's extracts of ``dataset`` (objects and records); the next
    query builds them again. Returns how many were deleted."""
    return _drop(hub, dataset=dataset)


def drop_extract_ids(hub: Hub, ids: list[int]) -> int:
    """Delete the extracts ``ids`` (objects and records); the next query builds them
    again. Returns how many were deleted."""
    if not ids:
        return 0
    return _drop(hub, ids=ids)


def _drop(
    hub: Hub,
    *,
    dataset: str | None = None,
    project: str | None = None,
    keep: str | None = None,
    ids: list[int] | None = None,
) -> int:
    with hub.read() as session:
        query = select(ProjectExtract)
        if dataset is not None:
            query = query.where(ProjectExtract.dataset == dataset)
        if ids is not None:
            query = query.where(ProjectExtract.id.in_(ids))
        if project is not None:
            query = query.where(ProjectExtract.project_id == _project(session, project).id)
        if keep is not None:
            query = query.where(ProjectExtract.fingerprint != keep)
        stale = [(row.id, row.location_id, list(row.parts)) for row in session.scalars(query)]
        wanted = {location_id for _, location_id, _ in stale}
        locations = {
            loc.id: loc for loc in session.scalars(select(Location).where(Location.id.in_(wanted)))
        }
        for loc in locations.values():
            session.expunge(loc)
    for extract_id, location_id, parts in stale:
        with hub.transaction() as session:
            session.execute(delete(ProjectExtract).where(ProjectExtract.id == extract_id))
            session.execute(
                delete(StoredObject).where(
                    StoredObject.location_id == location_id,
                    StoredObject.key.in_([p["key"] for p in parts]),
                )
            )
        _delete_objects(backend_for(hub, locations[location_id]), parts)
    return len(stale)


def _delete_objects(backend: Backend, parts: list[dict[str, Any]]) -> None:
    for part in parts:
        try:
            backend.delete(part["key"])
        except HubError as exc:  # the record is gone; the object is an orphan to report
            log.warning("could not delete extract part %s: %s", part["key"], exc)


class _VerifiedCache:
    """Ciphertext already checked against its SHA-256 (read-only buffers, as
    ``get_verified`` gives them), most recently used last."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str, str], data: Any) -> None:
        if len(data) > self.limit:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._size += len(data)
            while self._size > self.limit:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


VERIFIED = _VerifiedCache(CACHE_BYTES)


def _fetch(backend: Backend, location: Location, part: dict[str, Any]) -> Any:
    cache_key = (location.name, part["key"], part["sha256"])
    raw = VERIFIED.get(cache_key)
    if raw is not None:
        return raw
    raw = get_verified(
        backend, part["key"], part["sha256"],
        what=f"extract part {part['key']!r} on {backend.describe}",
        hint="it was altered or replaced; hdh rebuilds it if you delete the project's "
        "extracts of this dataset (or restore it from another copy)",
    )  # fmt: skip
    VERIFIED.put(cache_key, raw)
    return raw


def _few_values(chosen: VersionInfo, columns: list[str]) -> list[str]:
    """The text columns with few distinct values (known from the version's profile):
    read as dictionaries, which the query engine groups and joins on faster."""
    profile = {c["name"]: c for c in (chosen.manifest.get("profile") or {}).get("columns", [])}
    types = {c["name"]: c["type"] for c in chosen.manifest["schema"]}
    return [
        name
        for name in columns
        if types.get(name) in ("string", "large_string")
        and profile.get(name, {}).get("distinct") is not None
    ]


def _scan(
    hub: Hub,
    backend: Backend,
    location: Location,
    parts: list[dict[str, Any]],
    dictionaries: list[str],
) -> ds.Dataset:
    """An Arrow dataset over the extract's parts, decrypted as they are scanned."""
    parquet = ds.ParquetFileFormat(
        read_options=ds.ParquetReadOptions(dictionary_columns=dictionaries),
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(
            decryption_properties=decryption_properties(hub.keys)
        ),
    )
    with ThreadPoolExecutor(FETCHES) as pool:
        raws = list(pool.map(lambda part: _fetch(backend, location, part), parts))
    fragments = [parquet.make_fragment(pa.BufferReader(raw)) for raw in raws]
    try:
        schema = fragments[0].physical_schema
    except OSError as exc:
        raise TamperedObject(
            f"an extract part cannot be decrypted ({exc})",
            hint="its keys are gone or it was altered; restore it from another copy",
        ) from None
    return ds.FileSystemDataset(fragments, schema, parquet)
