"""The local key file: the hub's root secret when no external KMS/HSM is configured.

``hdh init`` creates it with mode 0600 in a 0700 folder; the hub refuses to use it
once anyone but its owner can read it. It never leaves the hub folder and is never
written to a storage location.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from hdh.errors import ConfigError

FORMAT = "hdh-local-keys/1"
KEY_BYTES = 32


@dataclass(frozen=True)
class KeyFileInfo:
    path: Path
    mode: int
    keys: int

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"


def create_key_file(path: Path, *, created_at: str) -> None:
    """Write a new key file holding one 256-bit master key, readable by its owner only.

    Refuses to overwrite an existing file (``O_EXCL``): a lost key means lost data.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "keys": [
            {
                "id": "master",
                "version": 1,
                "created_at": created_at,
                "material": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"),
            }
        ],
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def inspect_key_file(path: Path) -> KeyFileInfo:
    """Check that the key file exists, is private and well formed; never returns key material."""
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
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, expected {FORMAT!r}")
        keys = document["keys"]
        for key in keys:
            if len(base64.b64decode(key["material"], validate=True)) != KEY_BYTES:
                raise ValueError(f"key {key.get('id')!r} is not {KEY_BYTES} bytes")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the key file {path} is damaged ({exc})",
            hint="restore it from your key backup",
        ) from None
    return KeyFileInfo(path=path, mode=mode, keys=len(keys))
