"""Copying one object between two locations, ciphertext as it is, proven on both ends.

The bytes read from the source are hashed as they stream and compared with the SHA-256
and size the hub recorded when it wrote the object. An object whose bytes do not match
is ``corrupt``: when the mismatch shows only at the end of a streamed upload, the upload
is abandoned before it completes, so the target never holds it. A target that checks a
SHA-256 sent with each request (S3: ``x-amz-checksum-sha256``, refused with
``BadDigest``) is sent it, and the object's size is then read from the target; any
other target (Azure Blob, a folder) has the object read back and hashed again before it
counts as copied.

A location that does not answer (:class:`StorageUnavailable`) is tried again after a
pause that doubles each time; a refusal (credentials, permissions) or a missing source
object is permanent and reported at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from hdh.errors import HubError
from hdh.storage.backend import PART_SIZE, Backend, ObjectNotFound, StorageUnavailable

#: Objects up to this size are read whole and sent in one request; larger ones stream
#: through in parts, so memory stays bounded whatever their size.
WHOLE_UP_TO = PART_SIZE
MAX_BACKOFF_S = 30.0
#: Parts of one large object uploaded at once.
PARTS_AT_ONCE = 4


class CorruptSource(Exception):
    """The source's bytes are not the ones the hub recorded."""


class CopyMismatch(Exception):
    """What the target gives back is not what was sent."""


@dataclass(frozen=True)
class Outcome:
    #: copied, corrupt (the source does not match the hub's record) or failed
    state: str
    error: str
    tries: int


def _checked(chunks: Iterable[Any], size: int, sha256: str) -> Iterator[Any]:
    """Pass the chunks on, and raise before the end if they are not the recorded bytes."""
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise CorruptSource(f"the source holds more than the {size} bytes the hub recorded")
        digest.update(chunk)
        yield chunk
    if seen != size or digest.hexdigest() != sha256:
        raise CorruptSource(f"the source's {seen} bytes do not match the SHA-256 the hub recorded")


def _hash_of(chunks: Iterable[memoryview | bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        digest.update(chunk)
    return seen, digest.hexdigest()


def transfer(source: Backend, target: Backend, key: str, size: int, sha256: str) -> None:
    """Copy ``key`` once; raises :class:`CorruptSource`, :class:`CopyMismatch` or the
    locations' errors."""
    # The bytes are handed from one client to the other as the read-only buffers the
    # source gave, never copied here, and hashed once on the way.
    if size <= WHOLE_UP_TO:
        data = source.get_buffer(key)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptSource(
                f"the source's {len(data)} bytes do not match the SHA-256 the hub recorded"
            )
        target.put_unhashed(key, data)
    else:
        chunks = source.open(key, chunk_size=PART_SIZE, keep=True)
        target.put_unhashed(key, _checked(chunks, size, sha256), concurrency=PARTS_AT_ONCE)
    try:
        if target.features.server_checksum == "sha256":
            # The target checked every request's body against the SHA-256 sent with it
            # (computed from the very bytes hashed above) and refused a mismatch: what
            # is left to see is that the object is there, whole.
            written = (target.head(key).size, sha256)
        else:
            written = _hash_of(target.open(key))
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
) -> Outcome:
    """Copy one object, trying again after transient errors; never raises for the
    object's own trouble, which is returned as the :class:`Outcome`."""
    pause = backoff_s
    tries = 0
    while True:
        tries += 1
        try:
            transfer(source, target, key, size, sha256)
            return Outcome("copied", "", tries)
        except CorruptSource as exc:
            return Outcome("corrupt", f"{exc}; not copied", tries)
        except ObjectNotFound as exc:
            return Outcome("failed", f"{exc}", tries)
        except (StorageUnavailable, CopyMismatch) as exc:
            if tries > retries:
                return Outcome("failed", f"{exc} (after {tries} tries)", tries)
        except HubError as exc:  # refused: trying again would not help
            return Outcome("failed", str(exc), tries)
        sleep(pause)
        pause = min(pause * 2, MAX_BACKOFF_S)
