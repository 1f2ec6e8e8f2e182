"""Column profiles suppress every count under the threshold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pyarrow as pa

from hdh.catalog.profile import Profiler, profile


def table() -> pa.Table:
    return pa.table(
        {
            "sex": ["F"] * 20 + ["M"] * 12 + ["X"] * 3,
            "age": [30] * 34 + [99],
            "note": [None] * 3 + ["ok"] * 32,
            "birth": [date(1950, 3, 14)] * 34 + [date(1901, 2, 3)],
        }
    )


def parts() -> Iterator[pa.Table]:
    t = table()
    yield t.slice(0, 20)
    yield t.slice(20)


def column(result: dict[str, object], name: str) -> dict[str, object]:
    columns = result["columns"]
    assert isinstance(columns, list)
    return next(c for c in columns if c["name"] == name)


def test_small_counts_are_suppressed() -> None:
    result = profile(table().schema, parts)
    assert result["rows"] == 35
    sex = column(result, "sex")
    assert sex["top"] == [{"value": "F", "count": 20}, {"value": "M", "count": 12}]
    assert sex["top_suppressed"] == 1  # X, 3 people
    assert column(result, "note")["nulls"] is None  # 3 nulls
    histogram = column(result, "age")["histogram"]
    assert isinstance(histogram, list)
    assert histogram[0]["count"] == 34
    assert (histogram[-1]["count"], histogram[-1]["suppressed"]) == (None, True)  # the 99-year-old
    birth = column(result, "birth")
    assert (birth["min"], birth["max"]) == ("1901-02", "1950-03")


def test_a_tiny_table_shows_no_row_count() -> None:
    tiny = pa.table({"x": [1, 2, 3]})
    assert profile(tiny.schema, lambda: [tiny])["rows"] is None


def test_a_high_cardinality_column_gets_exact_bins_from_a_second_pass() -> None:
    values = pa.table({"amount": pa.array(range(25_000), pa.int64())})
    halves = [values.slice(0, 12_500), values.slice(12_500)]
    result = profile(values.schema, lambda: halves)
    amount = column(result, "amount")
    assert amount["distinct"] is None  # too many to list
    assert (amount["min"], amount["max"]) == (0, 30000)
    histogram = amount["histogram"]
    assert isinstance(histogram, list)
    assert [b["count"] for b in histogram] == [3000] * 8 + [1000, 0]


def test_extremes_are_rounded_to_the_order_of_the_range() -> None:
    years = pa.table({"year": pa.array([1933] * 20 + [2011] * 20, pa.int16())})
    year = column(profile(years.schema, lambda: [years]), "year")
    assert (year["min"], year["max"]) == (1930, 2020)


def test_a_dictionary_column_of_identifiers_is_profiled_as_too_many_to_list() -> None:
    """A Parquet source may keep a column dictionary-encoded (a pandas category)."""
    many = pa.array([f"id{i}" for i in range(30_000)]).dictionary_encode()
    few = pa.array([f"c{i % 5}" for i in range(30_000)]).dictionary_encode()
    table = pa.table({"many": many, "few": few})
    profiler = Profiler(table.schema)
    profiler.add(table)
    columns = {c["name"]: c for c in profiler.result()["columns"]}
    assert (columns["many"]["distinct"], columns["many"]["distinct_over"]) == (None, 10_000)
    assert columns["few"]["distinct"] == 5
