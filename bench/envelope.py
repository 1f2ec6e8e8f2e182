"""Streaming envelope encryption throughput, as a ratio to SHA-256 over the same bytes
(the hash every stored object gets anyway), measured in the same run.

Also compares encrypting into reused buffers (what hdh does) with allocating a fresh
output per chunk.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import uuid
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hdh.crypto.envelope import decrypt_stream, encrypt_stream

MiB = 1024 * 1024


def best_of(fn: Callable[[], None], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    chunk = os.urandom(MiB)
    chunks = [chunk] * args.mib
    key, key_id = os.urandom(32), uuid.uuid4()
    stored = b"".join(bytes(c) for c in encrypt_stream(chunks, key, key_id))

    def sha256() -> None:
        digest = hashlib.sha256()
        for c in chunks:
            digest.update(c)

    def encrypt() -> None:
        for _ in encrypt_stream(chunks, key, key_id):
            pass

    def encrypt_fresh_buffers() -> None:
        aead = AESGCM(key)
        for i, c in enumerate(chunks):
            aead.encrypt(i.to_bytes(12, "big"), c, b"")

    def decrypt() -> None:
        pieces = [stored[i : i + MiB] for i in range(0, len(stored), MiB)]
        for _ in decrypt_stream(pieces, lambda _k: key, name="bench"):
            pass

    base = best_of(sha256)
    total = args.mib / base
    print(f"SHA-256 baseline: {total:.0f} MiB/s over {args.mib} MiB")
    for label, fn in (
        ("encrypt_stream (reused buffers)", encrypt),
        ("AES-GCM with a fresh buffer per chunk", encrypt_fresh_buffers),
        ("decrypt_stream (verify every chunk)", decrypt),
    ):
        t = best_of(fn)
        print(f"{label}: {t / base:.2f}x the SHA-256 time ({args.mib / t:.0f} MiB/s)")


if __name__ == "__main__":
    main()
