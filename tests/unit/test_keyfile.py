"""The local key file: created private, refused when exposed or damaged."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hdh.crypto import create_key_file, inspect_key_file
from hdh.errors import ConfigError


def test_created_private_with_one_256_bit_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "hub.key"
    create_key_file(path, created_at="2026-11-29T00:00:00.000000Z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    info = inspect_key_file(path)
    assert (info.keys, info.mode_text) == (1, "0600")


def test_two_key_files_differ(tmp_path: Path) -> None:
    create_key_file(tmp_path / "a.key", created_at="t")
    create_key_file(tmp_path / "b.key", created_at="t")
    a = json.loads((tmp_path / "a.key").read_text())["keys"][0]["material"]
    b = json.loads((tmp_path / "b.key").read_text())["keys"][0]["material"]
    assert a != b


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    create_key_file(path, created_at="t")
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        create_key_file(path, created_at="t")
    assert path.read_bytes() == before


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    create_key_file(path, created_at="t")
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        inspect_key_file(path)
    assert str(caught.value) == (
        f"the key file {path} can be read by other users (mode 0644): run `chmod 600 {path}`"
    )


def test_damaged_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    create_key_file(path, created_at="t")
    path.write_text('{"format": "hdh-local-keys/1", "keys": [{"id": "m", "material": "AAAA"}]}')
    with pytest.raises(ConfigError, match="is damaged"):
        inspect_key_file(path)
