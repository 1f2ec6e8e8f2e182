"""The head witness file: created once, advanced only along the chain it records."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdh.audit import FileWitness, Head
from hdh.errors import IntegrityError

FIRST = Head(seq=1, hash="a" * 64)
LATER = Head(seq=5, hash="b" * 64)


def always(_current: Head) -> bool:
    return True


def never(_current: Head) -> bool:
    return False


def test_created_once(tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / "audit" / "head.json")
    witness.create(FIRST)
    assert witness.read() == FIRST
    with pytest.raises(FileExistsError):
        witness.create(LATER)
    assert witness.read() == FIRST


def test_advances_forward_only(tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / "head.json")
    witness.create(FIRST)
    assert witness.advance(LATER, always)
    assert witness.read() == LATER
    assert witness.advance(FIRST, always)  # an older head is already covered
    assert witness.read() == LATER


def test_refuses_to_move_off_a_rewritten_chain(tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / "head.json")
    witness.create(FIRST)
    assert not witness.advance(LATER, never)
    assert witness.read() == FIRST


def test_missing_witness_is_not_recreated(tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / "head.json")
    assert witness.read() is None
    assert not witness.advance(LATER, always)
    assert not witness.path.exists()


def test_unreadable_witness_is_an_integrity_error(tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / "head.json")
    witness.path.write_text('{"seq": "x"}')
    with pytest.raises(IntegrityError, match="is unreadable"):
        witness.read()
