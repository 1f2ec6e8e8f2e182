"""One small interface over object storage, and its implementation on obstore.

A :class:`Backend` stores opaque bytes under keys. It knows nothing of encryption,
policy or the catalogue: those wrap it (``hdh.storage.objects``). Every backend
implements the same operations and declares what else it can do in :class:`Features`;
one conformance suite (``tests/integration/test_backend_conformance.py``) runs against
each of them.

Large objects stream both ways: :meth:`Backend.put` takes an iterable of chunks and
uploads in parts; :meth:`Backend.open` yields the object in chunks; memory stays
bounded by the chunk size, whatever the object's size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

from hdh.errors import HubError, NotFound, PermissionDenied

if TYPE_CHECKING:
    from hdh.storage.multipart import ResumableUploads

#: Size of the parts of a multipart upload (S3 wants at least 5 MiB but for the last).
PART_SIZE = 8 * 1024 * 1024
#: Parts uploaded at once. Memory for a streamed upload is about (this + 1) x PART_SIZE.
PART_CONCURRENCY = 2
#: Size of the chunks reads hand out.
READ_CHUNK = 1024 * 1024
_PLAIN_KEY = re.compile(r"[A-Za-z0-9._/-]+")


class ObjectNotFound(NotFound):
    code = "object_not_found"


class StorageUnavailable(HubError):
    """The location did not answer or answered with an error that may pass."""

    exit_code = 7
    http_status = 503
    code = "storage_unavailable"
    retryable = True


class StorageDenied(PermissionDenied):
    """The location refused the credentials or the operation."""

    code = "storage_denied"


@dataclass(frozen=True)
class Features:
    """What a backend can do beyond the required operations."""

    multipart: bool = True
    #: Checksum the server verifies on upload and rejects a corrupted body with.
    server_checksum: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class PutResult:
    key: str
    size: int
    sha256: str  # of the bytes as stored


class _Hashing:
    """Passes chunks through while counting and hashing them."""

    def __init__(self, chunks: Iterable[bytes | memoryview]) -> None:
        self._chunks = chunks
        self.digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes | memoryview]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.digest.update(chunk)
            self.size += len(chunk)
            yield chunk


class Backend:
    """Object storage at one location, on obstore (local folder, S3 or Azure Blob)."""

    def __init__(
        self,
        store: Any,
        *,
        kind: str,
        describe: str,
        features: Features,
        resumable: ResumableUploads | None = None,
        folder: Path | None = None,
    ) -> None:
        self._store = store
        self.kind = kind
        #: The folder a local location's objects are files in.
        self._folder = folder
        self.describe = describe
        self.features = features
        #: Uploads in parts that a later process can resume (S3), when the location has them.
        self.resumable = resumable

    def _fail(self, exc: BaseException, key: str, action: str) -> HubError:
        where = f"{key!r} on {self.describe}"
        if isinstance(exc, NotFoundError | FileNotFoundError):
            return ObjectNotFound(
                f"no object {where}", hint="check the key, or list the location's objects"
            )
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
            return StorageDenied(
                f"{self.describe} refused to {action} {key!r}: {_first_line(exc)}",
                hint="check the location's credentials and their permissions",
            )
        return StorageUnavailable(
            f"could not {action} {where}: {_first_line(exc)}",
            hint="check that the location is reachable (hdh location test), then retry",
        )

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes | memoryview],
        *,
        concurrency: int = PART_CONCURRENCY,
    ) -> PutResult:
        """Store ``data`` (bytes, or chunks streamed in parts, ``concurrency`` at once)
        under ``key``, replacing it.

        Either the whole object is stored or none of it is visible: if the chunks stop
        with an error, the upload is abandoned and the error raised. Chunks may be views
        into buffers the producer reuses: each is hashed and copied before the next is
        asked for.

        The chunks are pulled here, in the caller's thread, and written through obstore's
        buffered writer. Handing obstore a Python iterator instead would make obstore pull
        it from inside its own runtime, and an iterator that reads from a backend (a
        copy) then panics: "Cannot start a runtime from within a runtime".
        """
        if isinstance(data, bytes | bytearray | memoryview):
            self._write(key, data, concurrency)
            return PutResult(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        source = _Hashing(data)
        size = self._write(key, source, concurrency)
        return PutResult(key=key, size=size, sha256=source.digest.hexdigest())

    def put_file(self, key: str, path: Path) -> PutResult:
        """Store the file at ``path`` under ``key``; the file is consumed (moved, or
        deleted once stored). A local location on the file system of ``path`` takes the
        file itself, renamed into place in one step (no second copy is written, and the
        key shows the whole file or what it held before); elsewhere the file is streamed
        as :meth:`put` does."""
        target = self._local_path(key)
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                same = path.stat().st_dev == target.parent.stat().st_dev
            except OSError as exc:
                raise self._unwritable(exc, key) from exc
            if same:
                digest = hashlib.sha256()
                with path.open("rb") as fh:
                    while block := fh.read(READ_CHUNK):
                        digest.update(block)
                    size = fh.tell()
                try:
                    path.replace(target)
                except OSError as exc:
                    raise self._unwritable(exc, key) from exc
                return PutResult(key=key, size=size, sha256=digest.hexdigest())
        try:
            with path.open("rb") as fh:
                return self.put(key, iter(lambda: fh.read(READ_CHUNK), b""))
        finally:
            path.unlink(missing_ok=True)

    def _unwritable(self, exc: OSError, key: str) -> HubError:
        return StorageUnavailable(
            f"could not write {key!r} on {self.describe}: {exc.strerror or exc}",
            hint="check that the location's folder exists and the hub may write to it",
        )

    def _local_path(self, key: str) -> Path | None:
        """The file a local location keeps ``key`` in; None elsewhere, and for a key
        that is not plain (letters, digits, ``._-`` and ``/`` between non-empty names):
        obstore checks and encodes those itself."""
        if self._folder is None or not _PLAIN_KEY.fullmatch(key):
            return None
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            return None
        return self._folder.joinpath(*parts)

    def put_unhashed(self, key: str, data: Any, *, concurrency: int = PART_CONCURRENCY) -> int:
        """:meth:`put` for a caller that hashes the bytes itself (a copy between
        locations): ``data`` is a buffer, or chunks of buffers; the stored size is
        returned."""
        return self._write(key, data, concurrency)

    def put_whole(self, key: str, data: Any) -> str:
        """Store a buffer in one request (a copy between locations, which hashes the
        bytes itself); the ETag the location answered, without its quotes."""
        try:
            answer = obstore.put(self._store, key, data, use_multipart=False)
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "write") from exc
        return str(answer.get("e_tag") or "").strip('"')

    def _write(self, key: str, data: Any, concurrency: int) -> int:
        try:
            if not isinstance(data, Iterable) or isinstance(data, bytes | bytearray | memoryview):
                obstore.put(self._store, key, data, chunk_size=PART_SIZE)
                return len(data)
            size = 0
            with obstore.open_writer(
                self._store, key, buffer_size=PART_SIZE, max_concurrency=concurrency
            ) as writer:
                for chunk in data:
                    size += len(chunk)
                    # obstore's writer keeps a reference to what it is given until the
                    # part is sent; producers reuse their buffers (encryption does), so
                    # hand it a copy of a view.
                    writer.write(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
            return size
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "write") from exc

    def open(self, key: str, chunk_size: int = READ_CHUNK, *, keep: bool = False) -> Iterator[Any]:
        """The object's bytes in chunks of about ``chunk_size``, streamed (not copied:
        each chunk is a view valid until the next one is asked for; with ``keep``, each
        is a read-only buffer of its own that may be kept)."""
        try:
            result = obstore.get(self._store, key)
            for chunk in result.stream(min_chunk_size=chunk_size):
                yield chunk if keep else memoryview(chunk)
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "read") from exc

    def get_buffer(self, key: str) -> Any:
        """The whole object as a read-only buffer, without the copy :meth:`get` makes."""
        try:
            return obstore.get(self._store, key).bytes()
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "read") from exc

    def get(self, key: str) -> bytes:
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "read") from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` (inclusive) to ``end`` (exclusive)."""
        if end <= start:
            return b""
        try:
            return bytes(obstore.get_range(self._store, key, start=start, end=end))
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "read") from exc

    def get_range_buffer(self, key: str, start: int, end: int) -> Any:
        """:meth:`get_range` as a read-only buffer, without the copy."""
        try:
            return obstore.get_range(self._store, key, start=start, end=end)
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "read") from exc

    def head(self, key: str) -> ObjectInfo:
        try:
            meta = obstore.head(self._store, key)
        except (BaseError, OSError) as exc:
            raise self._fail(exc, key, "inspect") from exc
        return ObjectInfo(key=meta["path"], size=meta["size"], etag=meta.get("e_tag"))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            for batch in obstore.list(self._store, prefix or None, chunk_size=1000):
                for meta in batch:
                    yield ObjectInfo(key=meta["path"], size=meta["size"], etag=meta.get("e_tag"))
        except (BaseError, OSError) as exc:
            raise self._fail(exc, prefix or "/", "list") from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing object is not an error."""
        try:
            obstore.delete(self._store, key)
        except (BaseError, OSError) as exc:
            if isinstance(exc, NotFoundError | FileNotFoundError):
                return
            raise self._fail(exc, key, "delete") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
