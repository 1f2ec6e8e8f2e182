"""The one road by which the hub writes and reads objects on its locations.

A write is checked against the residency policy before any byte moves, encrypted on
the way out with a fresh data key (streaming envelope encryption), and recorded (size
and SHA-256 of the stored bytes, data class, data key) in the same transaction as its
audit event. A read decrypts on the way in, verifying every chunk and, at the end, the
SHA-256 of the bytes as stored. Dataset parts, written with Parquet Modular Encryption,
are stored by ``hdh.ingest`` and recorded here too (format ``parquet``); they cannot
be replaced through this road.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from hdh import audit, policy
from hdh.crypto.envelope import TamperedObject, decrypt_stream, encrypt_stream
from hdh.crypto.keys import WrappedKey, check_sensitivity
from hdh.crypto.models import DataKey
from hdh.crypto.parquet import encryption_properties
from hdh.errors import Conflict, IntegrityError, InvalidInput, NotFound
from hdh.hub import Hub
from hdh.storage.backend import Backend, PutResult
from hdh.storage.locations import ProbeStep, get_location, open_backend, probe_location
from hdh.storage.models import Location, StoredObject


@dataclass(frozen=True)
class ObjectRecord:
    location: str
    key: str
    size: int
    plain_size: int
    sha256: str
    data_class: str
    sensitivity: str
    created_at: str


def backend_for(hub: Hub, location: Location) -> Backend:
    return open_backend(location, hub_dir=hub.settings.hub_dir, environ=os.environ)


@dataclass(frozen=True)
class Sealed:
    """An object encrypted and stored; ``data_key`` is the row to commit with its record."""

    stored: PutResult
    plain_size: int
    data_key: DataKey


def private_tmp(hub: Hub) -> Path:
    """The hub's folder for temporary files (``tmp/``, mode 0700), made if needed: what
    is written there is encrypted already, or never leaves the hub's machine."""
    root = hub.settings.hub_dir / "tmp"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


@dataclass(frozen=True)
class StoredParquet:
    size: int
    sha256: str
    #: The KEK version of each class that wraps the file's keys (kept inside the file).
    keks: dict[str, int]


def store_parquet(
    hub: Hub,
    backend: Backend,
    key: str,
    table: pa.Table,
    sensitivity: Mapping[str, str],
    *,
    compression: Any = "snappy",
    row_group_size: int | None = None,
) -> StoredParquet:
    """Write ``table`` as one Parquet file encrypted with Parquet Modular Encryption
    (each column under the KEK of its class in ``sensitivity``) to a private temporary
    file, and store it as ``key`` (:meth:`Backend.put_file`). No record is made: the
    caller records the size, SHA-256 and KEK versions returned."""
    keks: dict[str, int] = {}
    properties = encryption_properties(hub.keys, table.schema, sensitivity, keks)
    with tempfile.TemporaryDirectory(dir=private_tmp(hub)) as tmp:
        path = Path(tmp) / "file.parquet"
        with pq.ParquetWriter(
            path, table.schema, encryption_properties=properties, compression=compression
        ) as writer:
            writer.write_table(table, row_group_size=row_group_size)
        stored = backend.put_file(key, path)
    return StoredParquet(stored.size, stored.sha256, keks)


def seal(
    hub: Hub,
    backend: Backend,
    key: str,
    data: bytes | Iterable[bytes | memoryview],
    *,
    sensitivity: str,
) -> Sealed:
    """Encrypt ``data`` under a fresh data key and store it as ``key`` on ``backend``.

    No policy check and no record: callers (:func:`write_object`, ingestion) do both,
    and commit the returned data key in the transaction that records the object.
    """
    data_key, wrapped = hub.keys.new_data_key(sensitivity)
    key_id = uuid.uuid4()
    plain_size = 0

    def counted(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
        nonlocal plain_size
        for chunk in chunks:
            plain_size += len(chunk)
            yield chunk

    source = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    stored = backend.put(key, encrypt_stream(counted(source), data_key, key_id))
    row = DataKey(
        id=str(key_id),
        sensitivity=sensitivity,
        kek_version=wrapped.kek_version,
        wrapped=wrapped.to_text(),
        created_at=audit.utc_timestamp(),
    )
    return Sealed(stored=stored, plain_size=plain_size, data_key=row)


def write_object(
    hub: Hub,
    location_name: str,
    key: str,
    data: bytes | Iterable[bytes | memoryview],
    *,
    actor: str,
    data_class: str = "health",
    sensitivity: str = "clinical",
) -> ObjectRecord:
    """Encrypt and store ``data`` as ``key`` on ``location_name``; replaces an earlier
    version of the object. Idempotent: writing the same key again converges.

    Raises :class:`hdh.policy.PlacementRefused` (audited) before anything is sent when
    the policy does not allow ``data_class`` data on that location.
    """
    check_sensitivity(sensitivity)
    what = f"object {key!r} on location {location_name!r}"
    with hub.transaction() as session:
        location = get_location(session, location_name)
        existing = session.scalar(
            select(StoredObject.format).where(
                StoredObject.location_id == location.id, StoredObject.key == key
            )
        )
        if existing == "parquet" or (existing is not None and key.startswith("datasets/")):
            raise Conflict(
                f"{what} is a part of a published dataset version and cannot be replaced",
                hint="choose another key; dataset versions are immutable",
            )
        refused = policy.check_placement(session, location, data_class, actor=actor, what=what)
        session.expunge(location)
    if refused is not None:
        raise refused
    sealed = seal(hub, backend_for(hub, location), key, data, sensitivity=sensitivity)
    stored, plain_size, key_id = sealed.stored, sealed.plain_size, sealed.data_key.id
    now = sealed.data_key.created_at
    with hub.transaction() as session:
        session.add(sealed.data_key)
        row = session.scalar(
            select(StoredObject).where(
                StoredObject.location_id == location.id, StoredObject.key == key
            )
        )
        replaced_key: str | None = None
        if row is None:
            row = StoredObject(location_id=location.id, key=key)
            session.add(row)
        else:
            replaced_key = row.data_key_id
        row.size = stored.size
        row.sha256 = stored.sha256
        row.plain_size = plain_size
        row.data_class = data_class
        row.data_key_id = key_id
        row.created_at = now
        if replaced_key is not None:
            # The old version's data key protects nothing any more: forget it, so that
            # it does not hold back the retirement of its KEK.
            session.flush()
            old = session.get(DataKey, replaced_key)
            if old is not None:
                session.delete(old)
        audit.record(
            session,
            actor=actor,
            action="object.write",
            object_type="object",
            object_id=f"{location_name}:{key}",
            details={
                "size": stored.size,
                "sha256": stored.sha256,
                "data_class": data_class,
                "sensitivity": sensitivity,
            },
        )
    return ObjectRecord(
        location=location_name,
        key=key,
        size=stored.size,
        plain_size=plain_size,
        sha256=stored.sha256,
        data_class=data_class,
        sensitivity=sensitivity,
        created_at=now,
    )


def read_object(hub: Hub, location_name: str, key: str) -> Iterator[memoryview]:
    """The plaintext of an object the hub wrote, streamed and verified.

    Every chunk is authenticated before it is handed out; after the last one, the
    SHA-256 of the bytes read must equal the one recorded at write time. Each piece is
    valid until the next is asked for.
    """
    name = f"object {key!r} on location {location_name!r}"
    with hub.read() as session:
        location = get_location(session, location_name)
        found = session.execute(
            select(StoredObject, DataKey)
            .join(DataKey, DataKey.id == StoredObject.data_key_id)
            .where(StoredObject.location_id == location.id, StoredObject.key == key)
        ).one_or_none()
        if found is None:
            part = session.scalar(
                select(StoredObject.id).where(
                    StoredObject.location_id == location.id,
                    StoredObject.key == key,
                    StoredObject.format == "parquet",
                )
            )
            if part is not None:
                raise InvalidInput(
                    f"{name} is a part of a dataset version (encrypted Parquet)",
                    hint="read the dataset with hdh dataset show instead",
                )
            raise NotFound(
                f"the hub holds no {name}", hint="list them with hdh object list LOCATION"
            )
        record, data_key = found
        session.expunge_all()
    wrapped = WrappedKey(
        data_key.sensitivity, data_key.kek_version, base64.b64decode(data_key.wrapped)
    )

    def key_for(key_id: uuid.UUID) -> bytes:
        if str(key_id) != data_key.id:
            raise IntegrityError(
                f"{name} is encrypted with another data key than the one recorded for it",
                hint="it was replaced by another object; restore it from another copy",
            )
        return hub.keys.unwrap(wrapped)

    digest = hashlib.sha256()

    def hashed(chunks: Iterable[memoryview]) -> Iterator[memoryview]:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk

    backend = backend_for(hub, location)
    yield from decrypt_stream(hashed(backend.open(key)), key_for, name=name)
    if digest.hexdigest() != record.sha256:
        raise IntegrityError(
            f"{name} does not match the SHA-256 recorded when it was written",
            hint="it was replaced or damaged; restore it from another copy",
        )


def delete_object(hub: Hub, location_name: str, key: str, *, actor: str) -> None:
    """Delete an object the hub wrote with ``write_object``: its record and data key
    first (one transaction, audited), then the stored bytes."""
    with hub.transaction() as session:
        location = get_location(session, location_name)
        row = session.scalar(
            select(StoredObject).where(
                StoredObject.location_id == location.id, StoredObject.key == key
            )
        )
        if row is not None:
            data_key = row.data_key_id
            session.delete(row)
            session.flush()
            if data_key is not None:
                old = session.get(DataKey, data_key)
                if old is not None:
                    session.delete(old)
        audit.record(
            session,
            actor=actor,
            action="object.delete",
            object_type="object",
            object_id=f"{location_name}:{key}",
            details={},
        )
        session.expunge(location)
    backend_for(hub, location).delete(key)


def get_verified(
    backend: Backend,
    key: str,
    sha256: str,
    *,
    what: str,
    recorded: str = "its recorded SHA-256",
    hint: str = "it was altered or replaced; restore it from another copy",
) -> Any:
    """The stored bytes of ``key`` (a read-only buffer: no copy is made of a large Parquet
    file), refused (``TamperedObject``) unless they hash to ``sha256``: for objects whose
    content protection is inside them (Parquet Modular Encryption) and whose SHA-256 the
    hub recorded."""
    raw = backend.get_buffer(key)
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise TamperedObject(f"{what} does not match {recorded}", hint=hint)
    return raw


def read_all(hub: Hub, location_name: str, key: str) -> bytes:
    return b"".join(bytes(piece) for piece in read_object(hub, location_name, key))


def list_objects(hub: Hub, location_name: str) -> list[ObjectRecord]:
    with hub.read() as session:
        location = get_location(session, location_name)
        rows = session.execute(
            select(StoredObject, DataKey.sensitivity)
            .outerjoin(DataKey, DataKey.id == StoredObject.data_key_id)
            .where(StoredObject.location_id == location.id)
            .order_by(StoredObject.key)
        ).all()
    return [
        ObjectRecord(
            location=location_name,
            key=row.key,
            size=row.size,
            plain_size=row.plain_size,
            sha256=row.sha256,
            data_class=row.data_class,
            sensitivity=sensitivity or "per column",
            created_at=row.created_at,
        )
        for row, sensitivity in rows
    ]


def check_location(hub: Hub, location_name: str, *, actor: str) -> list[ProbeStep]:
    """Probe a location (:func:`probe_location`) and audit the outcome."""
    with hub.read() as session:
        location = get_location(session, location_name)
    steps = probe_location(backend_for(hub, location))
    ok = all(step.ok for step in steps)
    with hub.transaction() as session:
        audit.record(
            session,
            actor=actor,
            action="location.test",
            object_type="location",
            object_id=location_name,
            outcome="success" if ok else "failure",
            details={"steps": {step.step: step.ok for step in steps}},
        )
    return steps
