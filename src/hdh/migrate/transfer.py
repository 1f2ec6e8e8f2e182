"""Copying one object between two locations, ciphertext as it is, proven on both ends.

The bytes read from the source are hashed as they stream and compared with the SHA-256
and size the hub recorded when it wrote the object. An object whose bytes do not match
is ``corrupt``: when the mismatch shows only at the end of a streamed upload, the upload
is abandoned before it completes, so the target never holds it. A target that checks a
SHA-256 sent with each request (S3: ``x-amz-checksum-sha256``, refused with
``BadDigest``) is sent it; then an object sent in one request is checked by the ETag
the target answered (the MD5 of what it stored) and, when that is not the MD5 of the
bytes sent, by its size read from the target, as is an object sent in parts. Any other
target (Azure Blob, a folder) has the object read back and hashed again before it
counts as copied.

A large object going to an S3 location is sent in numbered parts of one upload whose
id the caller keeps (:class:`Resume`): a copy cut short, by an error or by the end of
the process, goes on from the parts the target holds, each re-read from the source and
matched by size and MD5 before it is counted, so only the missing parts are sent; the
whole object's SHA-256 is still computed over every byte read before the upload is
completed.

A location that does not answer (:class:`StorageUnavailable`) is tried again after a
pause that doubles each time; a refusal (credentials, permissions) or a missing source
object is permanent and reported at once.

A copy told to stop (``stopping``, set when the run stops: Ctrl-C) ends at the next
part or chunk instead of going on: a large object's parts sent so far (and those being
sent, at most PARTS_AT_ONCE) stay on an S3 target for the next run to go on from; an
object streamed elsewhere is abandoned unseen, and one being read back is left for
the next run to copy again. Its outcome is ``stopped``: neither copied nor failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from hdh.errors import Conflict, HubError
from hdh.storage.backend import PART_SIZE, Backend, ObjectNotFound, StorageUnavailable
from hdh.storage.multipart import (
    ResumableUploads,
    SentPart,
    UploadGone,
    etag_is_md5,
    part_size_for,
)

#: Objects up to this size are read whole and sent in one request; larger ones stream
#: through in parts, so memory stays bounded whatever their size.
WHOLE_UP_TO = PART_SIZE
MAX_BACKOFF_S = 30.0
#: Parts of one large object uploaded at once.
PARTS_AT_ONCE = 4
#: Parts of one large object read ahead of the one being hashed (resumable uploads).
READ_AHEAD = 1


class CorruptSource(Exception):
    """The source's bytes are not the ones the hub recorded."""


class CopyMismatch(Exception):
    """What the target gives back is not what was sent."""


class Stopped(Exception):
    """The run is stopping: the copy ended before it was done, leaving nothing visible."""


def stop_if(stopping: threading.Event | None, message: str) -> None:
    """Raise :class:`Stopped`, saying ``message``, if the run is stopping."""
    if stopping is not None and stopping.is_set():
        raise Stopped(message)


class ClaimLost(Conflict):
    """The worker copying an object no longer holds it: its claim lapsed, another took it."""


@dataclass(frozen=True)
class Outcome:
    #: copied, corrupt (the source does not match the hub's record), failed, or
    #: stopped (the run stopped first: the object is still to be copied)
    state: str
    error: str
    tries: int
    #: Bytes the last try found on the target, sent by an earlier one (not sent again).
    reused: int = 0
    #: What a re-keying copy made (``hdh.migrate.rekeying.Copy``).
    made: Any = None


def _no_keeping(upload_id: str | None) -> None:
    return None


def _reused(resume: Resume | None) -> int:
    return resume.reused if resume is not None else 0


@dataclass
class Resume:
    """Where the upload of one large object to the target stands, kept by the caller
    between tries and between processes."""

    #: The target's open upload of the object, if one was begun.
    upload_id: str | None = None
    #: Called with the upload id once it is begun, and with None once it is completed
    #: or dropped; it must keep it where the next process finds it.
    keep: Callable[[str | None], None] = field(default=_no_keeping)
    #: Bytes the latest try found on the target (sent by an earlier one), not sent again.
    reused: int = 0

    def ended(self) -> None:
        """The upload is completed or dropped: forget its id, here and where it is kept."""
        self.upload_id = None
        self.keep(None)


def _send_part(
    uploads: ResumableUploads, key: str, upload_id: str, number: int, data: Any
) -> SentPart:
    return uploads.send(key, upload_id, number, data, hashlib.sha256(data).digest())


def _send_resumably(
    source: Backend,
    uploads: ResumableUploads,
    key: str,
    size: int,
    sha256: str,
    resume: Resume,
    stopping: threading.Event | None = None,
) -> None:
    """Copy ``key`` in parts of one upload, going on from the parts the target holds."""
    resume.reused = 0
    held_by_source = source.head(key).size
    if held_by_source != size:
        if resume.upload_id is not None:  # begun by an earlier try: drop it, unseen
            uploads.abort(key, resume.upload_id)
            resume.ended()
        raise CorruptSource(
            f"the source holds {held_by_source} bytes, not the {size} the hub recorded"
        )
    held = {}
    if resume.upload_id is not None:
        try:
            held = uploads.parts(key, resume.upload_id)
        except UploadGone:  # completed, aborted or expired: begin again
            resume.upload_id = None
    if resume.upload_id is None:
        resume.upload_id = uploads.start(key)
        try:
            resume.keep(resume.upload_id)
        except ClaimLost:  # another worker copies the object now: leave nothing behind
            with contextlib.suppress(HubError):
                uploads.abort(key, resume.upload_id)
            resume.upload_id = None
            raise
    upload_id = resume.upload_id
    step = part_size_for(size)
    count = -(-size // step)

    def read(number: int) -> Any:
        """Part ``number`` (from 1) as the source gives it, exactly: no copy made here."""
        return source.get_range_buffer(key, (number - 1) * step, min(size, number * step))

    digest = hashlib.sha256()
    seen = 0
    sent: list[SentPart] = []
    pending: set[Future[SentPart]] = set()
    with ThreadPoolExecutor(PARTS_AT_ONCE + READ_AHEAD, thread_name_prefix="hdh-part") as pool:
        # The next parts are read while this one is hashed and the ones before are sent.
        reads = deque(pool.submit(read, n) for n in range(1, min(count, READ_AHEAD) + 1))
        try:
            for number in range(1, count + 1):
                # Stopping: the upload stays open with the parts sent, for the next run.
                stop_if(stopping, f"stopped after {number - 1} of {count} parts")
                part = reads.popleft().result()
                if number + READ_AHEAD <= count:
                    reads.append(pool.submit(read, number + READ_AHEAD))
                seen += len(part)
                digest.update(part)
                there = held.get(number)
                if there is not None and there.holds(part):
                    sent.append(SentPart(number, there.etag, hashlib.sha256(part).digest()))
                    resume.reused += len(part)
                    continue
                if len(pending) >= PARTS_AT_ONCE:  # memory: at most this many parts held
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    sent.extend(f.result() for f in finished)
                pending.add(pool.submit(_send_part, uploads, key, upload_id, number, part))
            finished, pending = wait(pending)
            sent.extend(f.result() for f in finished)
        finally:
            # Parts handed out are still sent (the pool waits for them), so that a copy
            # cut by the source goes on from them; reads ahead are not needed any more.
            for future in reads:
                future.cancel()
    if seen != size or digest.hexdigest() != sha256:
        uploads.abort(key, upload_id)  # never completed: the target never shows it
        resume.ended()
        raise CorruptSource(f"the source's {seen} bytes do not match the SHA-256 the hub recorded")
    uploads.complete(key, upload_id, sent)
    resume.ended()


def whole_checked(source: Backend, key: str, size: int, sha256: str) -> Any:
    """The whole object as the source gives it (a buffer, not copied), or
    :class:`CorruptSource` if it is not the bytes the hub recorded."""
    data = source.get_buffer(key)
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptSource(
            f"the source's {len(data)} bytes do not match the SHA-256 the hub recorded"
        )
    return data


def checked_chunks(
    chunks: Iterable[Any], size: int, sha256: str, stopping: threading.Event | None = None
) -> Iterator[Any]:
    """Pass the chunks on, and raise before the end if they are not the recorded bytes
    (or the run is stopping: the upload they feed is then abandoned, unseen)."""
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        stop_if(stopping, f"stopped after {seen} of {size} bytes")
        seen += len(chunk)
        if seen > size:
            raise CorruptSource(f"the source holds more than the {size} bytes the hub recorded")
        digest.update(chunk)
        yield chunk
    if seen != size or digest.hexdigest() != sha256:
        raise CorruptSource(f"the source's {seen} bytes do not match the SHA-256 the hub recorded")


def _hash_of(
    chunks: Iterable[memoryview | bytes], stopping: threading.Event | None = None
) -> tuple[int, str]:
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        stop_if(stopping, "stopped before the copy was read back")
        seen += len(chunk)
        digest.update(chunk)
    return seen, digest.hexdigest()


def transfer(
    source: Backend,
    target: Backend,
    key: str,
    size: int,
    sha256: str,
    resume: Resume | None = None,
    stopping: threading.Event | None = None,
) -> None:
    """Copy ``key`` once; raises :class:`CorruptSource`, :class:`CopyMismatch`,
    :class:`Stopped` or the locations' errors. With ``resume``, a large object goes to a
    target that can resume uploads (S3) in parts of an upload that outlives this call."""
    # The bytes are handed from one client to the other as the read-only buffers the
    # source gave, never copied here, and hashed once on the way.
    if size <= WHOLE_UP_TO:
        data = whole_checked(source, key, size, sha256)
        etag = target.put_whole(key, data)
        if target.features.server_checksum == "sha256" and etag_is_md5(etag, data):
            # The target checked the body against its SHA-256 on arrival, and the ETag it
            # answered is the MD5 of what it stored: the copy is checked after the write
            # without asking again. (A target whose ETags are not MD5s, e.g. under
            # server-side encryption, is asked for the object's size below.)
            return
    elif resume is not None and target.resumable is not None:
        _send_resumably(source, target.resumable, key, size, sha256, resume, stopping)
    else:
        chunks = checked_chunks(source.open(key, chunk_size=PART_SIZE, keep=True), size, sha256,
                                stopping)  # fmt: skip
        target.put_unhashed(key, chunks, concurrency=PARTS_AT_ONCE)
    try:
        if target.features.server_checksum == "sha256":
            # The target checked every request's body against the SHA-256 sent with it
            # (computed from the very bytes hashed above) and refused a mismatch: what
            # is left to see is that the object is there, whole.
            written = (target.head(key).size, sha256)
        else:
            written = _hash_of(target.open(key), stopping)
    except ObjectNotFound:
        raise CopyMismatch("the target does not show the object just written") from None
    if written != (size, sha256):
        raise CopyMismatch(
            f"the copy read back from the target ({written[0]} bytes) does not match"
        )


def copy_object(
    source: Backend,
    target: Backend,
    key: str,
    size: int,
    sha256: str,
    *,
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
    resume: Resume | None = None,
    rekey: Callable[[Backend, Backend, str, int, str], Any] | None = None,
    stopping: threading.Event | None = None,
) -> Outcome:
    """Copy one object, trying again after transient errors (a large object's upload
    going on from the parts sent before, with ``resume``); never raises for the object's
    own trouble, which is returned as the :class:`Outcome`. With ``rekey``, the copy is
    made by it (``hdh.migrate.rekeying``) instead of moving the ciphertext as it is.
    Once ``stopping`` is set, no try begins and a large object's stops at its next part."""
    pause = backoff_s
    tries = 0
    while True:
        if stopping is not None and stopping.is_set():
            return Outcome("stopped", "the run stopped first", tries, _reused(resume))
        tries += 1
        try:
            if rekey is not None:
                made = rekey(source, target, key, size, sha256)
                return Outcome("copied", "", tries, 0, made)
            transfer(source, target, key, size, sha256, resume, stopping)
            return Outcome("copied", "", tries, _reused(resume))
        except Stopped as exc:
            return Outcome("stopped", str(exc), tries, _reused(resume))
        except CorruptSource as exc:
            return Outcome("corrupt", f"{exc}; not copied", tries, _reused(resume))
        except ObjectNotFound as exc:
            return Outcome("failed", f"{exc}", tries, _reused(resume))
        except (StorageUnavailable, CopyMismatch) as exc:
            if tries > retries:
                return Outcome("failed", f"{exc} (after {tries} tries)", tries, _reused(resume))
        except HubError as exc:  # refused: trying again would not help
            return Outcome("failed", str(exc), tries, _reused(resume))
        if stopping is not None and sleep is time.sleep:
            stopping.wait(pause)  # a run that stops does not wait out the pause
        else:
            sleep(pause)
        pause = min(pause * 2, MAX_BACKOFF_S)
