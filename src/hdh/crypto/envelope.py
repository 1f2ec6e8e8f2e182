"""Streaming envelope encryption for every object that is not Parquet.

Format (version 1)::

    header (40 bytes)
        magic        6  b"HDHENC"
        version      1  1
        flags        1  0
        chunk_size   4  plaintext bytes per chunk, big-endian
        key_id      16  the data key's id (a UUID), looked up in the hub's database
        nonce_prefix 7  random per object
        reserved     5  zero
    chunks
        AES-256-GCM(data key, nonce, chunk, aad=header) = ciphertext + 16-byte tag
        nonce = nonce_prefix (7) || chunk index (4, big-endian) || final flag (1)

Every chunk is authenticated together with its index, whether it is the last one, and
the whole header. So a flipped bit, chunks swapped or moved, a chunk spliced from
another object, and a cut-off tail (the last chunk present lacks the final flag) are
each detected, and the error names the object and the chunk.

Chunks are encrypted and decrypted into reused buffers (``encrypt_into``/``decrypt_into``):
on these machines allocation, not AES, is the cost.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hdh.errors import IntegrityError

MAGIC = b"HDHENC"
VERSION = 1
HEADER = struct.Struct(">6sBBI16s7s5s")
HEADER_SIZE = HEADER.size  # 40
TAG = 16
DEFAULT_CHUNK = 1024 * 1024


class TamperedObject(IntegrityError):
    code = "tampered_object"


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def _rechunk(data: Iterable[bytes | memoryview], size: int) -> Iterator[bytes | memoryview]:
    """The same bytes in pieces of exactly ``size`` (the last may be shorter or empty)."""
    pending = bytearray()
    for piece in data:
        if not pending and len(piece) == size:
            yield piece
            continue
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    yield bytes(pending)


def encrypt_stream(
    data: Iterable[bytes | memoryview],
    data_key: bytes,
    key_id: uuid.UUID,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[bytes | memoryview]:
    """Encrypt ``data`` chunk by chunk. Yields the header, then one piece per chunk.

    Each piece is a view into a reused buffer, valid until the next piece is asked for
    (consumers copy or hash it before then, as :meth:`Backend.put` does).
    """
    if not 1 <= chunk_size <= 64 * 1024 * 1024:
        raise ValueError("chunk_size must be between 1 byte and 64 MiB")
    aead = AESGCM(data_key)
    prefix = os.urandom(7)
    header = HEADER.pack(MAGIC, VERSION, 0, chunk_size, key_id.bytes, prefix, bytes(5))
    yield header
    buffers = [bytearray(chunk_size + TAG), bytearray(chunk_size + TAG)]
    index = 0
    previous: bytes | memoryview | None = None
    for piece in _rechunk(data, chunk_size):
        if previous is not None:
            yield _seal(aead, prefix, index, False, previous, header, buffers[index % 2])
            index += 1
        previous = piece
    assert previous is not None  # _rechunk always yields at least one (maybe empty) piece
    yield _seal(aead, prefix, index, True, previous, header, buffers[index % 2])


def _seal(
    aead: AESGCM,
    prefix: bytes,
    index: int,
    final: bool,
    plain: bytes | memoryview,
    header: bytes,
    buffer: bytearray,
) -> memoryview:
    size = len(plain) + TAG
    out = memoryview(buffer)[:size]
    aead.encrypt_into(_nonce(prefix, index, final), plain, header, out)
    return out


def read_header(header: bytes, *, name: str) -> tuple[int, uuid.UUID, bytes]:
    """(chunk_size, key_id, nonce_prefix) of an encrypted object's header."""
    if len(header) < HEADER_SIZE:
        raise TamperedObject(
            f"{name} is not an encrypted hub object: it is only {len(header)} bytes long",
            hint="it was truncated or replaced; restore it from another copy",
        )
    magic, version, _flags, chunk_size, key_id, prefix, _ = HEADER.unpack(header[:HEADER_SIZE])
    if magic != MAGIC:
        raise TamperedObject(
            f"{name} is not an encrypted hub object (its header is wrong)",
            hint="it was replaced or damaged; restore it from another copy",
        )
    if version != VERSION:
        raise TamperedObject(
            f"{name} uses encryption format version {version}, this hdh reads {VERSION}",
            hint="upgrade hdh to read it",
        )
    return chunk_size, uuid.UUID(bytes=key_id), prefix


def decrypt_stream(
    data: Iterable[bytes | memoryview],
    key_for: Callable[[uuid.UUID], bytes],
    *,
    name: str,
) -> Iterator[memoryview]:
    """Decrypt an object made by :func:`encrypt_stream`, verifying every chunk.

    ``key_for(key_id)`` returns the data key named in the header. Each yielded piece is
    a view into a reused buffer, valid until the next is asked for. Raises
    :class:`TamperedObject` naming ``name`` and the chunk at the first problem; nothing
    after a bad chunk is ever yielded.
    """
    stream = iter(data)
    buffer = bytearray()
    for piece in stream:
        buffer += piece
        if len(buffer) >= HEADER_SIZE:
            break
    chunk_size, key_id, prefix = read_header(bytes(buffer[:HEADER_SIZE]), name=name)
    header = bytes(buffer[:HEADER_SIZE])
    del buffer[:HEADER_SIZE]
    aead = AESGCM(key_for(key_id))
    sealed_size = chunk_size + TAG
    out = [bytearray(chunk_size), bytearray(chunk_size)]
    index = 0
    more = True
    while more:
        # Keep one sealed chunk back until more data shows it is not the last.
        while len(buffer) > sealed_size:
            yield _open(aead, prefix, index, False, buffer, sealed_size, header, out, name)
            del buffer[:sealed_size]
            index += 1
        following = next(stream, None)
        if following is None:
            more = False
        else:
            buffer += following
    if len(buffer) < TAG:
        raise TamperedObject(
            f"{name} is truncated: chunk {index} is missing or cut short",
            hint="the object lost its end; restore it from another copy",
        )
    yield _open(aead, prefix, index, True, buffer, len(buffer), header, out, name)


def _open(
    aead: AESGCM,
    prefix: bytes,
    index: int,
    final: bool,
    buffer: bytearray,
    size: int,
    header: bytes,
    out: list[bytearray],
    name: str,
) -> memoryview:
    sealed = memoryview(buffer)[:size]
    target = memoryview(out[index % 2])[: size - TAG]
    try:
        aead.decrypt_into(_nonce(prefix, index, final), sealed, header, target)
    except InvalidTag:
        if final and _opens_as(aead, prefix, index, False, sealed, header):
            raise TamperedObject(
                f"{name} is truncated: it ends after chunk {index}, which is not its last",
                hint="the object lost its end; restore it from another copy",
            ) from None
        raise TamperedObject(
            f"{name} failed authentication at chunk {index}: it was altered, its chunks "
            "were reordered, or it was pieced together from another object",
            hint="do not use it; restore it from another copy",
        ) from None
    finally:
        sealed.release()
    return target


def _opens_as(
    aead: AESGCM, prefix: bytes, index: int, final: bool, sealed: memoryview, header: bytes
) -> bool:
    try:
        aead.decrypt(_nonce(prefix, index, final), bytes(sealed), header)
    except InvalidTag:
        return False
    return True


def plaintext_size(stored_size: int, chunk_size: int) -> int:
    """The plaintext size of an encrypted object of ``stored_size`` bytes."""
    body = stored_size - HEADER_SIZE
    chunks = -(-body // (chunk_size + TAG)) if body > 0 else 0
    return body - chunks * TAG
