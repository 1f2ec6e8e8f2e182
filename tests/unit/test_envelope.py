"""Streaming envelope encryption: round trips of every shape, and every tampering caught."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator

import pytest

from hdh.crypto.envelope import (
    HEADER_SIZE,
    TAG,
    TamperedObject,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
)

KEY = bytes(range(32))
KEY_ID = uuid.UUID(int=42)
NAME = "object 'datasets/d1/part-0' on location 'local'"


def seal(plain: bytes, chunk_size: int = 64, pieces: int = 7) -> bytes:
    parts = [plain[i : i + pieces] for i in range(0, len(plain), pieces)] or [b""]
    return b"".join(bytes(c) for c in encrypt_stream(parts, KEY, KEY_ID, chunk_size=chunk_size))


def unseal(stored: bytes, feed: int = 13) -> bytes:
    def key_for(key_id: uuid.UUID) -> bytes:
        assert key_id == KEY_ID
        return KEY

    pieces: Iterable[bytes] = [stored[i : i + feed] for i in range(0, len(stored), feed)]
    return b"".join(bytes(c) for c in decrypt_stream(pieces, key_for, name=NAME))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 1000])
@pytest.mark.parametrize("feed", [1, 13, 64, 10_000])
def test_round_trip(size: int, feed: int) -> None:
    plain = os.urandom(size)
    stored = seal(plain)
    assert unseal(stored, feed) == plain
    assert plaintext_size(len(stored), 64) == size


def test_stored_bytes_hide_the_plaintext() -> None:
    plain = b"NIR 1 85 05 78 006 084 36 " * 100
    stored = seal(plain)
    assert b"NIR" not in stored
    assert len(stored) == HEADER_SIZE + len(plain) + (-(-len(plain) // 64)) * TAG


def test_two_encryptions_differ() -> None:
    assert seal(b"same data") != seal(b"same data")


def test_flipped_bit_is_named() -> None:
    stored = bytearray(seal(os.urandom(300)))
    stored[HEADER_SIZE + 80 + 3] ^= 0x01  # inside chunk 1
    with pytest.raises(TamperedObject) as caught:
        unseal(bytes(stored))
    assert str(caught.value).startswith(f"{NAME} failed authentication at chunk 1: ")


def test_altered_header_is_caught() -> None:
    stored = bytearray(seal(os.urandom(100)))
    stored[12] ^= 0x01  # the key id
    with pytest.raises(TamperedObject, match="failed authentication at chunk 0"):
        decrypt(bytes(stored))


def decrypt(stored: bytes) -> bytes:
    return b"".join(bytes(c) for c in decrypt_stream([stored], lambda _k: KEY, name=NAME))


def test_truncated_tail_is_named() -> None:
    stored = seal(os.urandom(300))
    sealed = 64 + TAG
    cut_at_boundary = stored[: HEADER_SIZE + 2 * sealed]
    with pytest.raises(TamperedObject) as caught:
        unseal(cut_at_boundary)
    assert str(caught.value).startswith(
        f"{NAME} is truncated: it ends after chunk 1, which is not its last"
    )
    with pytest.raises(TamperedObject, match="failed authentication at chunk 4"):
        unseal(stored[:-5])  # 300 bytes in 64-byte chunks: the last is chunk 4, cut short
    with pytest.raises(TamperedObject, match="is truncated: chunk 0 is missing"):
        unseal(stored[:HEADER_SIZE])
    with pytest.raises(TamperedObject, match="only 20 bytes long"):
        unseal(stored[:20])


def test_swapped_chunks_are_named() -> None:
    stored = seal(os.urandom(300))
    sealed = 64 + TAG
    chunks = [stored[HEADER_SIZE + i * sealed : HEADER_SIZE + (i + 1) * sealed] for i in range(5)]
    swapped = stored[:HEADER_SIZE] + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(TamperedObject, match="failed authentication at chunk 0"):
        unseal(swapped)


def test_chunk_from_another_object_is_caught() -> None:
    first, second = seal(os.urandom(200)), seal(os.urandom(200))
    spliced = first[: HEADER_SIZE + 80] + second[HEADER_SIZE + 80 :]
    with pytest.raises(TamperedObject, match="failed authentication at chunk 1"):
        unseal(spliced)


def test_nothing_after_a_bad_chunk_is_yielded() -> None:
    plain = os.urandom(64 * 4)
    stored = bytearray(seal(plain))
    stored[HEADER_SIZE + 2 * 80 + 1] ^= 0xFF  # chunk 2
    got: list[bytes] = []

    def read_all() -> None:
        for piece in decrypt_stream([bytes(stored)], lambda _k: KEY, name=NAME):
            got.append(bytes(piece))

    with pytest.raises(TamperedObject):
        read_all()
    assert b"".join(got) == plain[:128]


def test_not_an_encrypted_object() -> None:
    with pytest.raises(TamperedObject, match="is not an encrypted hub object"):
        decrypt(b"PAR1" + bytes(100))


def test_streams_in_bounded_pieces() -> None:
    def source() -> Iterator[bytes]:
        for _ in range(50):
            yield os.urandom(10_000)

    sizes = [len(c) for c in encrypt_stream(source(), KEY, KEY_ID, chunk_size=4096)]
    assert max(sizes) == 4096 + TAG
