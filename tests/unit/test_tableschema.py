"""Table Schema validation: every value that breaks the schema is reported by row and
column, with the check it broke; valid values come out typed."""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa
import pytest

from hdh.catalog.tableschema import (
    BadSchema,
    Conformer,
    SchemaViolation,
    parse_schema,
)


def schema(*fields: dict[str, object], **extra: object) -> Conformer:
    return Conformer(parse_schema({"fields": list(fields), **extra}, origin="t"))


def text(**columns: list[str | None]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in columns.items()})


def problems(conformer: Conformer) -> dict[str, tuple[int, list[int]]]:
    return {
        f"{p.column}: {p.check}": (p.count, [e["row"] for e in p.examples])
        for p in conformer.report.problems.values()
    }


def test_sas_style_dates_are_read_by_their_declared_format() -> None:
    conformer = schema(
        {"name": "stamp", "type": "datetime", "format": "%d%b%Y:%H:%M:%S"},
        {"name": "day", "type": "date", "format": "%d%m%Y"},
        {"name": "month", "type": "date", "format": "%m"},
    )
    out = conformer.conform(
        text(
            stamp=["06DEC1959:00:00:00", "02jul2017:13:05:00", "31FEB2020:00:00:00"],
            day=["09032023", "31022020", ""],
            month=["05", "13", "12"],
        )
    )
    assert out.batch.column("stamp").to_pylist()[:2] == [
        datetime(1959, 12, 6),
        datetime(2017, 7, 2, 13, 5),
    ]
    assert out.batch.column("day").to_pylist() == [date(2023, 3, 9), None, None]
    # 31 February is not 2 March: strptime's leniency is caught.
    assert problems(conformer) == {
        "stamp: type: not a valid datetime": (1, [3]),
        "day: type: not a valid date": (1, [2]),
        "month: type: not a valid date": (1, [2]),
    }
    assert out.bad.to_pylist() == [False, True, True]


def test_types_and_constraints_name_each_bad_row() -> None:
    conformer = schema(
        {"name": "id", "type": "integer", "constraints": {"required": True}},
        {"name": "code", "type": "string", "constraints": {"maxLength": 3, "pattern": "[A-Z]+"}},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0, "maximum": 100}},
        {"name": "flag", "type": "boolean"},
        {"name": "ym", "type": "yearmonth"},
        {"name": "sex", "type": "string", "constraints": {"enum": ["1", "2"]}},
        primaryKey=["id"],
    )
    out = conformer.conform(
        text(
            id=["1", "2", "x", "", "2"],
            code=["AB", "ABCD", "ab", "A", "B"],
            amount=["5.5", "-1", "1e2", "101", ".5"],
            flag=["1", "0", "true", "maybe", "FALSE"],
            ym=["202003", "2020-04", "202013", "2020", "190001"],
            sex=["1", "2", "3", "1", "2"],
        )
    )
    assert problems(conformer) == {
        "id: required: empty": (1, [4]),
        "id: type: not a valid integer": (1, [3]),
        "code: maxLength 3": (1, [2]),
        "code: pattern [A-Z]+": (1, [3]),
        "amount: minimum 0": (1, [2]),
        "amount: maximum 100": (1, [4]),
        "flag: type: not a valid boolean": (1, [4]),
        "ym: type: not a valid yearmonth": (2, [3, 4]),
        "sex: enum: not an allowed value": (1, [3]),
        "id: primary key: duplicate": (1, [5]),
    }
    assert out.batch.column("amount").to_pylist()[0] == 5.5
    assert out.batch.column("ym").to_pylist()[:2] == ["2020-03", "2020-04"]
    assert out.batch.column("flag").to_pylist()[:3] == [True, False, True]
    assert out.good().column("id").to_pylist() == [1]  # the only row that broke nothing
    assert conformer.report.bad_rows == 4


def test_row_numbers_and_duplicates_run_across_batches() -> None:
    conformer = schema({"name": "id", "type": "integer"}, primaryKey="id")
    conformer.conform(text(id=["1", "2"]))
    second = conformer.conform(text(id=["3", "1"]))
    assert problems(conformer) == {"id: primary key: duplicate": (1, [4])}
    bad = second.bad_batch(text(id=["3", "1"]))
    assert bad.to_pylist() == [{"id": "1", "_row": 4, "_problems": "id: primary key: duplicate"}]


def test_signed_numbers_are_read() -> None:
    conformer = schema({"name": "i", "type": "integer"}, {"name": "x", "type": "number"})
    out = conformer.conform(text(i=["+7", "-7", "7"], x=["+1.5", "-2e3", ".5"]))
    assert out.batch.column("i").to_pylist() == [7, -7, 7]
    assert out.batch.column("x").to_pylist() == [1.5, -2000.0, 0.5]
    assert conformer.report.ok


def test_missing_values_are_null_not_errors() -> None:
    conformer = schema({"name": "n", "type": "integer"}, missingValues=["", "NA", "."])
    out = conformer.conform(text(n=["1", "NA", ".", ""]))
    assert out.batch.column("n").to_pylist() == [1, None, None, None]
    assert conformer.report.ok


def test_columns_must_match_the_schema() -> None:
    conformer = schema({"name": "a"}, {"name": "b"})
    with pytest.raises(SchemaViolation, match=r"missing b; not in the schema c"):
        conformer.check_columns(["a", "c"], "f.csv")


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ([], "a Table Schema is a JSON object"),
        ({"fields": []}, "it has no 'fields' list"),
        ({"fields": [{"name": "a", "type": "colour"}]}, "field 'a' has type 'colour'"),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, "field 'a' is declared twice"),
        ({"fields": [{"name": "a"}], "primaryKey": ["b"]}, "primaryKey ['b'] names a field"),
        (
            {"fields": [{"name": "d", "type": "date", "format": "dd/mm/yyyy"}]},
            "format 'dd/mm/yyyy' is not a strptime pattern",
        ),
        (
            {"fields": [{"name": "a", "constraints": {"pattern": "("}}]},
            "pattern '(' is not valid",
        ),
    ],
)
def test_a_bad_schema_is_refused_with_the_reason(descriptor: object, message: str) -> None:
    with pytest.raises(BadSchema) as caught:
        parse_schema(descriptor, origin="x.json")
    assert message in str(caught.value)
    assert str(caught.value).startswith("x.json: ")
