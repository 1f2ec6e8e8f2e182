"""The local key file: the hub's key-encryption keys when no external KMS/HSM is configured.

It holds one list of versioned KEKs per sensitivity class (``identifiers``, ``clinical``,
``other``). ``hdh init`` creates it with mode 0600 in a 0700 folder; the hub refuses
to use it once anyone but its owner can read it. It never leaves the hub folder and is
never written to a storage location. Rotation adds a version; old versions stay until
retired, which is refused while any data key is still wrapped by them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdh.errors import ConfigError

FORMAT = "hdh-local-keys/2"
KEY_BYTES = 32
SENSITIVITIES = ("identifiers", "clinical", "other")


@dataclass(frozen=True)
class KeyFileInfo:
    path: Path
    mode: int
    keys: int

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"


def _new_version(version: int, created_at: str) -> dict[str, Any]:
    return {
        "version": version,
        "created_at": created_at,
        "retired": False,
        "material": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"),
    }


def _write_private(path: Path, document: dict[str, Any], *, exclusive: bool) -> None:
    """Write ``document`` readable by its owner only; replace atomically unless ``exclusive``."""
    target = path if exclusive else path.with_name(path.name + ".new")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    if not exclusive:
        target.replace(path)


def create_key_file(path: Path, *, created_at: str) -> None:
    """Write a new key file with version 1 of a 256-bit KEK for each sensitivity class.

    Refuses to overwrite an existing file (``O_EXCL``): a lost key means lost data.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "keks": {s: [_new_version(1, created_at)] for s in SENSITIVITIES},
        # Keyed-hash secret for pseudonyms: versioned so it can rotate.
        "pseudonym_secrets": [_new_version(1, created_at)],
    }
    _write_private(path, document, exclusive=True)


def read_key_file(path: Path) -> dict[str, Any]:
    """The key file's content, after checking it is private and well formed."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"the key file {path} is missing",
            hint="restore it from your key backup; without it the hub's encrypted data cannot "
            "be read",
        ) from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"the key file {path} can be read by other users (mode {mode:04o})",
            hint=f"run `chmod 600 {path}`",
        )
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, expected {FORMAT!r}")
        keks = document["keks"]
        for sensitivity in SENSITIVITIES:
            versions = keks[sensitivity]
            if not versions:
                raise ValueError(f"no key for {sensitivity}")
            for entry in versions:
                material = base64.b64decode(entry["material"], validate=True)
                if len(material) != KEY_BYTES:
                    raise ValueError(
                        f"{sensitivity} v{entry.get('version')} is not {KEY_BYTES} bytes"
                    )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the key file {path} is damaged ({exc})",
            hint="restore it from your key backup",
        ) from None
    return document


def write_key_file(path: Path, document: dict[str, Any]) -> None:
    """Replace the key file atomically (write, fsync, rename), keeping it 0600."""
    _write_private(path, document, exclusive=False)


def inspect_key_file(path: Path) -> KeyFileInfo:
    """Check that the key file exists, is private and well formed; never returns key material."""
    document = read_key_file(path)
    count = sum(len(v) for v in document["keks"].values())
    return KeyFileInfo(path=path, mode=stat.S_IMODE(path.stat().st_mode), keys=count)


def new_version(created_at: str, version: int) -> dict[str, Any]:
    return _new_version(version, created_at)
