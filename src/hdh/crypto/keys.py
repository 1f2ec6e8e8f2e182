"""Key-encryption keys (KEKs) and the data keys they wrap.

Each object gets its own random 256-bit data key; the data key is stored only wrapped
(encrypted) by the current KEK of the object's sensitivity class. KEKs are held by a
:class:`KeyProvider`: the local key file by default, an external KMS or HSM in
production (the interface is the seam for one). Rotating a KEK adds a version and
rewraps the data keys, without rewriting any object.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hdh.crypto.keyfile import SENSITIVITIES, new_version, read_key_file, write_key_file
from hdh.errors import Conflict, IntegrityError, InvalidInput

DATA_KEY_BYTES = 32


@dataclass(frozen=True)
class KekVersion:
    sensitivity: str
    version: int
    created_at: str
    retired: bool
    current: bool


@dataclass(frozen=True)
class WrappedKey:
    sensitivity: str
    kek_version: int
    blob: bytes  # nonce (12) + AES-GCM ciphertext of the data key + tag (16)

    def to_text(self) -> str:
        return base64.b64encode(self.blob).decode("ascii")


def check_sensitivity(sensitivity: str) -> str:
    if sensitivity not in SENSITIVITIES:
        raise InvalidInput(
            f"{sensitivity!r} is not a sensitivity class",
            hint=f"use one of {', '.join(SENSITIVITIES)}",
        )
    return sensitivity


def _aad(sensitivity: str, version: int) -> bytes:
    return f"hdh-data-key|{sensitivity}|v{version}".encode()


class KeyProvider(ABC):
    """Holds the KEKs; wraps and unwraps data keys. Never hands a KEK out."""

    @abstractmethod
    def versions(self) -> list[KekVersion]: ...

    @abstractmethod
    def current_version(self, sensitivity: str) -> int: ...

    @abstractmethod
    def wrap(self, sensitivity: str, data_key: bytes) -> WrappedKey: ...

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey) -> bytes: ...

    @abstractmethod
    def rotate(self, sensitivity: str, *, created_at: str) -> int:
        """Add a new KEK version for ``sensitivity``; it becomes current. Returns it."""

    @abstractmethod
    def retire(self, sensitivity: str, version: int) -> None:
        """Destroy a KEK version. The caller checks that nothing depends on it first."""

    @abstractmethod
    def pseudonym_secret(self, version: int | None = None) -> tuple[int, bytes]:
        """The pseudonymisation secret of ``version`` (default: the newest) and its version."""

    @abstractmethod
    def pseudonym_secret_versions(self) -> list[int]:
        """Every pseudonymisation secret version the provider holds, oldest first."""

    @abstractmethod
    def rotate_pseudonym_secret(self, *, created_at: str) -> int:
        """Add a pseudonymisation secret version; new datasets use it. Returns it."""

    def new_data_key(self, sensitivity: str) -> tuple[bytes, WrappedKey]:
        check_sensitivity(sensitivity)
        data_key = os.urandom(DATA_KEY_BYTES)
        return data_key, self.wrap(sensitivity, data_key)

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        """The same data key, wrapped by the current KEK of its class."""
        if wrapped.kek_version == self.current_version(wrapped.sensitivity):
            return wrapped
        return self.wrap(wrapped.sensitivity, self.unwrap(wrapped))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise changes to the key file across threads and processes."""
    with LocalKeyProvider._lock, (path.parent / (path.name + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LocalKeyProvider(KeyProvider):
    """KEKs from the hub's key file (``keys/hub.key``, mode 0600).

    The file is read again whenever it was replaced since it was last read (a rotation
    or a retirement by another process: every change replaces it whole), so that a
    long-running process (``hdh serve``, a migration worker) never wraps keys under a
    version rotated away from, nor uses one retired, by another process.
    """

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._loaded: dict[str, Any] = {}
        self._document = read_key_file(path)

    def _mark(self) -> tuple[int, int, int] | None:
        try:
            found = self.path.stat()
        except OSError:  # gone or unreadable now: what was read stays in use
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    @property
    def _document(self) -> dict[str, Any]:
        mark = self._mark()
        if mark is not None and mark != self._seen:
            self._loaded, self._seen = read_key_file(self.path), mark
        return self._loaded

    @_document.setter
    def _document(self, document: dict[str, Any]) -> None:
        self._loaded, self._seen = document, self._mark()

    def _entries(self, sensitivity: str) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = self._document["keks"][check_sensitivity(sensitivity)]
        return entries

    def _material(self, sensitivity: str, version: int) -> bytes:
        for entry in self._entries(sensitivity):
            if entry["version"] == version:
                if entry.get("retired"):
                    raise IntegrityError(
                        f"the {sensitivity} key version {version} was retired, but data still "
                        "refers to it",
                        hint="restore the key file from a backup taken before the retirement",
                    )
                return base64.b64decode(str(entry["material"]))
        raise IntegrityError(
            f"the key file {self.path} has no {sensitivity} key version {version}",
            hint="restore the key file from your key backup",
        )

    def versions(self) -> list[KekVersion]:
        found = []
        for sensitivity in SENSITIVITIES:
            current = self.current_version(sensitivity)
            for entry in self._entries(sensitivity):
                version = int(str(entry["version"]))
                found.append(
                    KekVersion(
                        sensitivity=sensitivity,
                        version=version,
                        created_at=str(entry["created_at"]),
                        retired=bool(entry.get("retired")),
                        current=version == current,
                    )
                )
        return found

    def current_version(self, sensitivity: str) -> int:
        live = [int(str(e["version"])) for e in self._entries(sensitivity) if not e.get("retired")]
        return max(live)

    def wrap(self, sensitivity: str, data_key: bytes) -> WrappedKey:
        version = self.current_version(sensitivity)
        nonce = os.urandom(12)
        sealed = AESGCM(self._material(sensitivity, version)).encrypt(
            nonce, data_key, _aad(sensitivity, version)
        )
        return WrappedKey(sensitivity=sensitivity, kek_version=version, blob=nonce + sealed)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        kek = self._material(wrapped.sensitivity, wrapped.kek_version)
        try:
            return AESGCM(kek).decrypt(
                wrapped.blob[:12], wrapped.blob[12:], _aad(wrapped.sensitivity, wrapped.kek_version)
            )
        except InvalidTag:
            raise IntegrityError(
                f"a {wrapped.sensitivity} data key (key version {wrapped.kek_version}) does not "
                "unwrap: it was altered, or the key file is not this hub's",
                hint="check that the key file belongs to this hub; restore it from backup",
            ) from None

    def pseudonym_secret_versions(self) -> list[int]:
        return sorted(int(e["version"]) for e in self._document.get("pseudonym_secrets") or [])

    def pseudonym_secret(self, version: int | None = None) -> tuple[int, bytes]:
        secrets_ = self._document.get("pseudonym_secrets") or []
        if not secrets_:
            raise IntegrityError(
                f"the key file {self.path} has no pseudonymisation secret",
                hint="it was made by an older hdh; create a new hub, or restore a newer key file",
            )
        entry = (
            max(secrets_, key=lambda e: int(e["version"]))
            if version is None
            else next((e for e in secrets_ if int(e["version"]) == version), None)
        )
        if entry is None:
            raise IntegrityError(
                f"the key file {self.path} has no pseudonymisation secret version {version}",
                hint="restore the key file from your key backup",
            )
        return int(entry["version"]), base64.b64decode(entry["material"])

    def rotate_pseudonym_secret(self, *, created_at: str) -> int:
        with _locked(self.path):
            document = read_key_file(self.path)
            entries = document.setdefault("pseudonym_secrets", [])
            version = max((int(e["version"]) for e in entries), default=0) + 1
            entries.append(new_version(created_at, version))
            write_key_file(self.path, document)
            self._document = document
        return version

    def signing_key(self) -> Ed25519PrivateKey:
        """The hub's Ed25519 key for signing what it attests (migration reports), made
        on first use and kept in the key file; its public half is printed with what it
        signs, so anyone can check a signature without the hub."""
        entry = self._document.get("signing_key")
        if entry is None:
            with _locked(self.path):
                document = read_key_file(self.path)
                if document.get("signing_key") is None:
                    document["signing_key"] = {
                        "algorithm": "ed25519",
                        "material": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
                    }
                    write_key_file(self.path, document)
                self._document = document
            entry = document["signing_key"]
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(entry["material"]))

    def rotate(self, sensitivity: str, *, created_at: str) -> int:
        with _locked(self.path):
            document = read_key_file(self.path)
            entries = document["keks"][check_sensitivity(sensitivity)]
            version = max(int(e["version"]) for e in entries) + 1
            entries.append(new_version(created_at, version))
            write_key_file(self.path, document)
            self._document = document
        return version

    def retire(self, sensitivity: str, version: int) -> None:
        with _locked(self.path):
            document = read_key_file(self.path)
            entries = document["keks"][check_sensitivity(sensitivity)]
            entry = next((e for e in entries if e["version"] == version), None)
            if entry is None:
                raise InvalidInput(
                    f"there is no {sensitivity} key version {version}",
                    hint="see the versions with `hdh key list`",
                )
            if entry.get("retired"):
                raise Conflict(
                    f"{sensitivity} key version {version} is already retired",
                    hint="see the versions with `hdh key list`",
                )
            if version == self.current_version(sensitivity):
                raise Conflict(
                    f"{sensitivity} key version {version} is the current one",
                    hint=f"rotate first (`hdh key rotate --class {sensitivity}`), then retire it",
                )
            entry["retired"] = True
            entry["material"] = base64.b64encode(bytes(32)).decode("ascii")
            write_key_file(self.path, document)
            self._document = document
