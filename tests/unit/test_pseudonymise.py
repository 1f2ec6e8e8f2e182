"""Pseudonymising a column batch by batch gives every row the HMAC of its own value,
whatever path the lookup of values seen before takes."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from hdh.ingest import pseudonymise
from hdh.ingest.pseudonymise import Pseudonymiser

SECRET = bytes(range(32))


def expected(values: list[object]) -> list[str | None]:
    one = Pseudonymiser({}, SECRET, 1)
    return [None if v is None else one.pseudonym(v) for v in values]


def batches_of(values: list[object], size: int, kind: pa.DataType) -> list[pa.Array]:
    return [pa.array(values[i : i + size], kind) for i in range(0, len(values), size)]


@pytest.mark.parametrize("distinct", [3, 50_000])  # by distinct value, and row by row
def test_every_row_gets_its_own_values_pseudonym_across_batches(distinct: int) -> None:
    rng = np.random.default_rng(7)
    values: list[object] = [f"P{n:07d}" for n in rng.integers(0, distinct, 120_000)]
    for i in range(0, len(values), 997):
        values[i] = None
    p = Pseudonymiser({"id": "pseudonymise"}, SECRET, 1)
    for batch in batches_of(values, 30_000, pa.string()):
        assert p._pseudonymise_column(batch, "id").to_pylist() == expected(batch.to_pylist())


def test_numbers_and_empty_columns() -> None:
    p = Pseudonymiser({}, SECRET, 1)
    for batch in ([1, 2, None, 2, 10**12], [2, 10**12, 7]):
        column = pa.array(batch, pa.int64())
        assert p._pseudonymise_column(column, "n").to_pylist() == expected(batch)
    assert p._pseudonymise_column(pa.nulls(4, pa.string()), "s").to_pylist() == [None] * 4
    assert p._pseudonymise_column(pa.array([], pa.string()), "s").to_pylist() == []


def test_values_sharing_a_fingerprint_keep_their_own_pseudonyms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every value is given the same 64-bit fingerprint: a value is never given another
    value's pseudonym because their fingerprints are equal."""

    def same_for_all(self: object, column: pa.Array) -> np.ndarray:
        return np.full(len(column), 42, np.uint64)

    monkeypatch.setattr(pseudonymise._Seen, "fingerprints", same_for_all)
    p = Pseudonymiser({}, SECRET, 1)
    first = ["a", "b", "c", "a", None]
    second = ["c", "d", "a", "b", "d"]
    for batch in (first, second, first):
        column = pa.array(batch, pa.string())
        assert p._pseudonymise_column(column, "x").to_pylist() == expected(batch)


def test_the_memory_of_seen_values_is_bounded() -> None:
    p = Pseudonymiser({}, SECRET, 1, cache_size=1_000)
    for start in range(0, 5_000, 1_500):
        batch = [f"v{n}" for n in range(start, start + 1_500)]
        assert p._pseudonymise_column(pa.array(batch), "x").to_pylist() == expected(batch)
        assert len(p._seen["x"]) <= 1_500


def test_a_first_batch_without_values_does_not_spoil_the_next() -> None:
    p = Pseudonymiser({}, SECRET, 1)
    for first in (pa.nulls(4, pa.string()), pa.array([], pa.string())):
        p._seen.clear()
        assert p._pseudonymise_column(first, "c").to_pylist() == [None] * len(first)
        column = pa.array(["a", None, "b"])
        assert p._pseudonymise_column(column, "c").to_pylist() == expected(["a", None, "b"])


def test_every_column_type_gets_the_pseudonyms_of_its_python_values() -> None:
    p = Pseudonymiser({}, SECRET, 1)
    columns = [
        pa.array(["x", "y", None, "x"]).dictionary_encode(),  # as Parquet may give it
        pa.array(np.array([1.5, 2.0, 1.5], np.float16)),
        pa.array([Decimal("1.10"), None, Decimal("2.5")], pa.decimal256(10, 2)),
        pa.array(["x", None, "y"], pa.string_view()),
        pa.array([1.5, float("nan"), 1.5]),
    ]
    for column in columns:
        for _ in range(2):  # and again, from what was kept
            got = p._pseudonymise_column(column, str(column.type))
            assert got.to_pylist() == expected(column.to_pylist())


def test_text_is_normalised_the_same_way_whichever_path_it_takes() -> None:
    """All-ASCII text is normalised by Arrow, other text by Python: spaces of every kind
    Python's ``split`` knows (tabs, form feeds, the \\x1c-\\x1f separators) and case are
    dropped alike, so one identifier written two ways gets one pseudonym, in a column of
    either kind and in a single value."""
    p = Pseudonymiser({}, SECRET, 1)
    ascii_spellings = ["ab c", "AB\tC", "a\x1cbc\n", " aBc\x0b", "A\x1fB\x0cC\r"]
    for kind in (pa.string(), pa.large_string()):
        got = p._pseudonymise_column(pa.array([*ascii_spellings, None], kind), f"a-{kind}")
        assert got.to_pylist() == [p.pseudonym("ABC")] * 5 + [None]
    # A column with one non-ASCII value goes through Python's rules, which map "ß" to "SS"
    # and also drop a no-break space; its ASCII values get the same pseudonyms as above.
    mixed = ["straße", "STRASSE", "ab\u00a0c", "a b c"]
    got = p._pseudonymise_column(pa.array(mixed), "mixed")
    assert got.to_pylist() == [p.pseudonym("STRASSE")] * 2 + [p.pseudonym("ABC")] * 2
    # A pseudonym is 32 lower-case hex digits, in an array of any length.
    assert all(len(v) == 32 and v == v.lower() for v in got.to_pylist())
    assert p._hash_array(pa.array([], pa.string())).to_pylist() == []
