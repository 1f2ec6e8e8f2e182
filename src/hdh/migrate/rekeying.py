"""Copying one object under new keys, for a migration planned with ``rekey``.

The copy is not the source's ciphertext: the object is decrypted with the hub's keys on
the transfer host and encrypted again under a fresh data key (envelope objects) or
fresh Parquet keys wrapped by the current KEKs (dataset parts, extracts, saved tables).
Once the source copies are decommissioned and their keys destroyed, whatever the old
provider kept (snapshots, deleted blobs, backups) no longer opens with anything the hub
holds.

Since its bytes differ, the copy is proven by what it holds: the source's bytes must
hash to the SHA-256 the hub recorded and open under the recorded key (a corrupt source
is reported, never copied); the copy is then read back from the target, must hash to
the SHA-256 computed as it was written, and must open under its new key to the same
content (the SHA-256 of the decrypted bytes for an envelope object, the decoded table
for a Parquet file). A re-keyed copy is sent again whole after an interruption: its
parts are new ciphertext each time, so there is nothing on the target to go on from.

A Parquet file is decoded whole (up to a million rows for a dataset part): only as many
are rewritten at once as there are processors, whatever the run's concurrency, so that
memory stays bounded (the work is CPU-bound anyway). Envelope objects stream.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hdh import audit
from hdh.crypto.envelope import TamperedObject, decrypt_stream, encrypt_stream
from hdh.crypto.keys import KeyProvider, WrappedKey
from hdh.crypto.models import DataKey
from hdh.crypto.parquet import read_encrypted, rekey
from hdh.migrate.transfer import (
    CopyMismatch,
    CorruptSource,
    checked_chunks,
    stop_if,
    whole_checked,
)
from hdh.storage.backend import PART_SIZE, Backend, ObjectNotFound

#: Parquet files rewritten at once, in this process.
_REWRITING = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))


@dataclass(frozen=True)
class SourceKey:
    """How the hub recorded an object on the source: its format and, for an envelope
    object, its data key."""

    format: str
    key_id: str | None
    wrapped: WrappedKey | None


@dataclass(frozen=True)
class Copy:
    """A re-keyed copy on the target."""

    size: int
    sha256: str
    #: Envelope objects: the copy's new data key, to commit with the outcome.
    data_key: DataKey | None
    #: Parquet files: the KEK version of each class that wraps the copy's keys.
    keks: dict[str, int] | None
    #: The source's data key (envelope objects), destroyed at decommission.
    source_key_id: str | None
    #: Parquet files: the KEK versions that wrap the source's keys (for a rollback).
    source_keks: dict[str, int] | None = None


def source_key(fmt: str, data_key: DataKey | None) -> SourceKey:
    if data_key is None:
        return SourceKey(fmt, None, None)
    wrapped = WrappedKey(
        data_key.sensitivity, data_key.kek_version, base64.b64decode(data_key.wrapped)
    )
    return SourceKey(fmt, data_key.id, wrapped)


def rekey_copy(
    keys: KeyProvider,
    recorded: SourceKey | None,
    source: Backend,
    target: Backend,
    key: str,
    size: int,
    sha256: str,
    *,
    stopping: threading.Event | None = None,
) -> Copy:
    """Copy ``key`` under new keys (see the module); raises :class:`CorruptSource`,
    :class:`CopyMismatch`, :class:`Stopped` (``stopping`` set: an object in envelope
    format stops at its next chunk, nothing of it visible, or while it is read back) or
    the locations' errors."""
    if recorded is None:
        raise ObjectNotFound(
            f"{key} is no longer recorded on the source",
            hint="it was deleted since the plan; the next cutover drops it from the plan",
        )
    if recorded.format == "parquet":
        return _parquet(keys, source, target, key, size, sha256)
    if recorded.wrapped is None or recorded.key_id is None:
        raise CorruptSource(f"{key} has no data key recorded: it cannot be decrypted")
    return _envelope(keys, recorded, source, target, key, size, sha256, stopping)


def _hashed(chunks: Iterable[Any], digest: Any) -> Iterator[Any]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _envelope(
    keys: KeyProvider,
    recorded: SourceKey,
    source: Backend,
    target: Backend,
    key: str,
    size: int,
    sha256: str,
    stopping: threading.Event | None,
) -> Copy:
    assert recorded.wrapped is not None
    old = recorded.wrapped

    def old_key(key_id: uuid.UUID) -> bytes:
        if str(key_id) != recorded.key_id:
            raise CorruptSource("it is encrypted with another data key than the one recorded")
        return keys.unwrap(old)

    data_key, wrapped = keys.new_data_key(old.sensitivity)
    key_id = uuid.uuid4()
    plain = hashlib.sha256()
    name = f"the source copy of {key}"
    try:
        opened = decrypt_stream(
            checked_chunks(source.open(key, chunk_size=PART_SIZE), size, sha256, stopping),
            old_key,
            name=name,
        )
        stored = target.put(key, encrypt_stream(_hashed(opened, plain), data_key, key_id))
    except TamperedObject as exc:
        raise CorruptSource(f"it does not decrypt ({exc.message})") from None

    def new_key(found: uuid.UUID) -> bytes:
        if found != key_id:
            raise CopyMismatch("the copy read back names another data key than its own")
        return data_key

    back, back_plain = hashlib.sha256(), hashlib.sha256()
    try:
        for piece in decrypt_stream(_hashed(target.open(key), back), new_key, name=key):
            stop_if(stopping, "stopped before the copy was read back")
            back_plain.update(piece)
    except TamperedObject as exc:
        raise CopyMismatch(f"the copy read back does not decrypt ({exc.message})") from None
    except ObjectNotFound:
        raise CopyMismatch("the target does not show the object just written") from None
    if back.hexdigest() != stored.sha256 or back_plain.digest() != plain.digest():
        raise CopyMismatch("the copy read back from the target does not match what was written")
    row = DataKey(
        id=str(key_id),
        sensitivity=old.sensitivity,
        kek_version=wrapped.kek_version,
        wrapped=wrapped.to_text(),
        created_at=audit.utc_timestamp(),
    )
    return Copy(stored.size, stored.sha256, row, None, recorded.key_id)


def _parquet(
    keys: KeyProvider, source: Backend, target: Backend, key: str, size: int, sha256: str
) -> Copy:
    with _REWRITING:
        return _rewrite(keys, source, target, key, size, sha256)


def _rewrite(
    keys: KeyProvider, source: Backend, target: Backend, key: str, size: int, sha256: str
) -> Copy:
    raw = whole_checked(source, key, size, sha256)
    try:
        made = rekey(raw, keys)
    except OSError as exc:
        raise CorruptSource(f"it does not decrypt ({exc})") from None
    del raw
    stored = target.put(key, made.data)
    try:
        back = target.get(key)
    except ObjectNotFound:
        raise CopyMismatch("the target does not show the object just written") from None
    if hashlib.sha256(back).hexdigest() != stored.sha256:
        raise CopyMismatch("the copy read back from the target does not match what was written")
    try:
        opened = read_encrypted(pa.BufferReader(back), keys, threads=False)
    except OSError as exc:
        raise CopyMismatch(f"the copy read back does not decrypt ({exc})") from None
    if not opened.equals(made.table, check_metadata=True):
        raise CopyMismatch("the copy read back does not hold the source's rows")
    return Copy(stored.size, stored.sha256, None, made.keks, None, made.original_keks)
