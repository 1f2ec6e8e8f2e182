"""The local key file: created private, refused when exposed or damaged."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hdh.crypto import create_key_file, inspect_key_file
from hdh.errors import ConfigError


def test_created_private_with_a_256_bit_kek_per_sensitivity(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "hub.key"
    create_key_file(path, created_at="2026-11-29T00:00:00.000000Z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    info = inspect_key_file(path)
    assert (info.keys, info.mode_text) == (3, "0600")
    keks = json.loads(path.read_text())["keks"]
    assert sorted(keks) == ["clinical", "identifiers", "other"]


def test_two_key_files_differ(tmp_path: Path) -> None:
    create_key_file(tmp_path / "a.key", created_at="t")
    create_key_file(tmp_path / "b.key", created_at="t")
    a = json.loads((tmp_path / "a.key").read_text())["keks"]
    b = json.loads((tmp_path / "b.key").read_text())["keks"]
    materials = [doc[s][0]["material"] for doc in (a, b) for s in doc]
    assert len(set(materials)) == 6


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
    document = json.loads(path.read_text())
    document["keks"]["clinical"][0]["material"] = "AAAA"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="is damaged"):
        inspect_key_file(path)
