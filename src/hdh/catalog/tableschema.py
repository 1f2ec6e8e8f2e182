"""Frictionless Table Schema: the catalogue's schema language, and validation against it.

A schema (``fields``, ``missingValues``, ``primaryKey``, ``foreignKeys``) is parsed into a
:class:`TableSchema`; :class:`Conformer` turns batches of raw text columns into typed
Arrow columns and reports every value that breaks the schema, by row and column.
Checked: the type (with a declared ``format``, e.g. SAS-style ``%d%b%Y:%H:%M:%S`` or
``%d%m%Y``), ``required``, ``minLength``/``maxLength``, ``minimum``/``maximum``,
``pattern``, ``enum``, ``unique`` and the primary key. Foreign keys are recorded in the
catalogue but not enforced: the tables they point to are ingested on their own.

Types map to Arrow as: string → string, integer → int64, number → float64, boolean →
bool, date → date32, datetime → timestamp[ms] (UTC when the text carries an offset), year →
int16, yearmonth → string ``YYYY-MM`` (``YYYYMM`` is accepted, as SNDS files write it).
A ``date`` whose format has no year (``%m``: a month on its own) stays text, checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hdh.errors import InvalidInput

TYPES = ("string", "integer", "number", "boolean", "date", "datetime", "year", "yearmonth")
TRUE_VALUES = ("true", "True", "TRUE", "1")
FALSE_VALUES = ("false", "False", "FALSE", "0")
EXAMPLES = 5

_INTEGER = r"^[+-]?[0-9]+$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_YEAR = r"^[0-9]{4}$"
_YEARMONTH = r"^([0-9]{4})-?(0[1-9]|1[0-2])$"


class BadSchema(InvalidInput):
    code = "bad_schema"


class SchemaViolation(InvalidInput):
    """Rows break the schema. The message shows examples of the bad values, for the
    steward; ``audit_reason`` says the same without any value, for the audit log."""

    code = "schema_violation"

    def __init__(self, message: str, *, hint: str = "", audit_reason: str = "") -> None:
        super().__init__(message, hint=hint)
        self.audit_reason = audit_reason or message


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str = "string"
    format: str = "default"
    description: str = ""
    nomenclature: str = ""
    constraints: dict[str, Any] = field(default_factory=dict)
    true_values: tuple[str, ...] = TRUE_VALUES
    false_values: tuple[str, ...] = FALSE_VALUES

    @property
    def custom_format(self) -> str | None:
        """A strptime pattern declared for a date or datetime, if any."""
        if self.type in ("date", "datetime") and self.format not in ("default", "any", ""):
            return self.format
        return None

    def arrow_type(self) -> pa.DataType:
        fmt = self.custom_format
        if self.type == "date" and fmt is not None and not re.search("%[Yy]", fmt):
            return pa.string()
        return {
            "string": pa.string(),
            "integer": pa.int64(),
            "number": pa.float64(),
            "boolean": pa.bool_(),
            "date": pa.date32(),
            # Parquet has no seconds unit: milliseconds is what a version reads back as.
            "datetime": pa.timestamp("ms"),
            "year": pa.int16(),
            "yearmonth": pa.string(),
        }[self.type]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.format != "default":
            out["format"] = self.format
        for key in ("description", "nomenclature"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.constraints:
            out["constraints"] = self.constraints
        return out


@dataclass(frozen=True)
class TableSchema:
    name: str
    fields: tuple[FieldSpec, ...]
    title: str = ""
    description: str = ""
    missing_values: tuple[str, ...] = ("",)
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.name, f.arrow_type()) for f in self.fields])

    def nomenclatures(self) -> list[str]:
        return sorted({f.nomenclature for f in self.fields if f.nomenclature not in ("", "-")})


def parse_schema(data: Any, *, origin: str) -> TableSchema:
    """A :class:`TableSchema` from a descriptor, or a refusal naming what is wrong."""

    def bad(problem: str) -> BadSchema:
        return BadSchema(
            f"{origin}: {problem}",
            hint="fix the Table Schema (https://specs.frictionlessdata.io/table-schema/)",
        )

    if not isinstance(data, dict):
        raise bad("a Table Schema is a JSON object")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise bad("it has no 'fields' list")
    fields: list[FieldSpec] = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_fields, start=1):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise bad(f"field {position} has no name")
        name = raw["name"]
        if name in seen:
            raise bad(f"field {name!r} is declared twice")
        seen.add(name)
        kind = raw.get("type", "string")
        if kind not in TYPES:
            raise bad(f"field {name!r} has type {kind!r}; hdh knows {', '.join(TYPES)}")
        constraints = raw.get("constraints", {})
        if not isinstance(constraints, dict):
            raise bad(f"field {name!r}: 'constraints' must be an object")
        pattern = constraints.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise bad(f"field {name!r}: pattern {pattern!r} is not valid ({exc})") from None
        fmt = raw.get("format", "default") or "default"
        if kind in ("date", "datetime") and fmt not in ("default", "any") and "%" not in fmt:
            raise bad(f"field {name!r}: format {fmt!r} is not a strptime pattern such as %d%m%Y")
        fields.append(
            FieldSpec(
                name=name,
                type=kind,
                format=fmt,
                description=str(raw.get("description", "") or ""),
                nomenclature=str(raw.get("nomenclature", "") or ""),
                constraints=constraints,
                true_values=tuple(raw.get("trueValues", TRUE_VALUES)),
                false_values=tuple(raw.get("falseValues", FALSE_VALUES)),
            )
        )
    key = data.get("primaryKey", [])
    key = [key] if isinstance(key, str) else key
    if not isinstance(key, list) or any(k not in seen for k in key):
        raise bad(f"primaryKey {key!r} names a field that is not declared")
    foreign = data.get("foreignKeys", [])
    if not isinstance(foreign, list):
        raise bad("'foreignKeys' must be a list")
    missing = data.get("missingValues", [""])
    if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
        raise bad("'missingValues' must be a list of strings")
    name = data.get("name")
    return TableSchema(
        name=name if isinstance(name, str) and name else origin,
        fields=tuple(fields),
        title=str(data.get("title", "") or ""),
        description=str(data.get("description", "") or ""),
        missing_values=tuple(missing),
        primary_key=tuple(key),
        foreign_keys=tuple(f for f in foreign if isinstance(f, dict)),
        raw=data,
    )


def load_schema(path: Path) -> TableSchema:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadSchema(
            f"{path.name}: cannot be read as a JSON Table Schema ({exc})",
            hint="give a Table Schema JSON file",
        ) from None
    return parse_schema(data, origin=path.stem)


@dataclass
class Problem:
    column: str
    check: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """Every violation found, by column and check: counts, and the first rows as examples."""

    rows: int = 0
    bad_rows: int = 0
    problems: dict[tuple[str, str], Problem] = field(default_factory=dict)

    def add(self, column: str, check: str, rows: list[int], values: list[Any]) -> None:
        problem = self.problems.setdefault((column, check), Problem(column, check))
        problem.count += len(rows)
        for row, value in zip(rows, values, strict=True):
            if len(problem.examples) >= EXAMPLES:
                break
            problem.examples.append({"row": row, "value": value})

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "problems": [
                {"column": p.column, "check": p.check, "count": p.count, "examples": p.examples}
                for p in self.problems.values()
            ],
        }

    def summary(self, limit: int = 10) -> str:
        lines = [
            f"{p.column}: {p.check} in {p.count} row{'s' if p.count != 1 else ''} (e.g. "
            + ", ".join(f"row {e['row']}: {e['value']!r}" for e in p.examples[:3])
            + ")"
            for p in list(self.problems.values())[:limit]
        ]
        more = len(self.problems) - limit
        if more > 0:
            lines.append(f"… and {more} more column/check pair{'s' if more != 1 else ''}")
        return "; ".join(lines)


@dataclass
class Conformed:
    """One batch held to the schema: typed values, and which rows broke it and how."""

    batch: pa.RecordBatch
    bad: pa.Array
    bad_rows: int
    failures: list[tuple[str, pa.Array]]
    numbers: pa.Array

    def good(self) -> pa.RecordBatch:
        if not self.bad_rows:
            return self.batch
        return self.batch.filter(pc.invert(self.bad))

    def bad_batch(self, raw: pa.RecordBatch) -> pa.RecordBatch:
        """The bad rows as the source gave them, with ``_row`` and ``_problems``."""
        # Joined with empty pieces, then the empty pieces' separators removed (arrow's
        # null_handling="skip" drops whole rows here instead of skipping nulls).
        pieces = [pc.if_else(mask, label, "") for label, mask in self.failures]
        problems = pa.array([""] * raw.num_rows, pa.string())
        if pieces:
            joined = pc.binary_join_element_wise(*pieces, "; ")
            joined = pc.replace_substring_regex(joined, "(; )+", "; ")
            problems = pc.utf8_trim(joined, "; ")
        columns = [pc.filter(c, self.bad) for c in raw.columns]
        columns += [pc.filter(self.numbers, self.bad), pc.filter(problems, self.bad)]
        return pa.RecordBatch.from_arrays(columns, names=[*raw.schema.names, "_row", "_problems"])


class Conformer:
    """Converts raw text batches to the schema's types, collecting violations.

    Rows are numbered from 1 (the first data row, after the header) across batches.
    A ``partial`` schema (declared formats only) converts the columns it names and
    lets the others through as they are.
    """

    def __init__(self, schema: TableSchema, *, partial: bool = False) -> None:
        self.schema = schema
        self.partial = partial
        self.report = Report()
        self._specs = {f.name: f for f in schema.fields}
        self._unique: dict[tuple[str, ...], set[Any]] = {}
        if schema.primary_key:
            self._unique[schema.primary_key] = set()
        for f in schema.fields:
            if f.constraints.get("unique") and (f.name,) != schema.primary_key:
                self._unique[(f.name,)] = set()

    def check_columns(self, names: Sequence[str], where: str) -> None:
        declared = set(self.schema.names)
        missing = [n for n in self.schema.names if n not in names]
        extra = [] if self.partial else [n for n in names if n not in declared]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:10])}")
            if extra:
                parts.append(f"not in the schema {', '.join(extra[:10])}")
            raise SchemaViolation(
                f"{where}: its columns do not match schema {self.schema.name!r} "
                f"({'; '.join(parts)})",
                hint="check that this is the right file for the schema (--schema), "
                "or the column names given to --format",
            )

    def output_schema(self, raw: pa.Schema) -> pa.Schema:
        return pa.schema(
            [
                pa.field(f.name, self._specs[f.name].arrow_type()) if f.name in self._specs else f
                for f in raw
            ]
        )

    def preview(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch typed as it will be published, without counting its errors."""
        columns = [
            _convert(self._specs[name], _text(column), self.schema.missing_values)[0]
            if name in self._specs
            else column
            for name, column in zip(batch.schema.names, batch.columns, strict=True)
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.output_schema(batch.schema))

    def conform(self, batch: pa.RecordBatch) -> Conformed:
        first_row = self.report.rows + 1
        self.report.rows += batch.num_rows
        numbers = pa.array(range(first_row, first_row + batch.num_rows), pa.int64())
        bad = pa.array([False] * batch.num_rows, pa.bool_())
        failures: list[tuple[str, pa.Array]] = []
        columns = []
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            spec = self._specs.get(name)
            if spec is None:
                columns.append(column)
                continue
            raw = _text(column)
            typed, found = _convert(spec, raw, self.schema.missing_values)
            for check, mask in found:
                bad = pc.or_(bad, mask)
                failures.append((f"{name}: {check}", mask))
                self._note(name, check, mask, numbers, raw)
            columns.append(typed)
        out = pa.RecordBatch.from_arrays(columns, schema=self.output_schema(batch.schema))
        for key, seen in self._unique.items():
            mask = self._duplicates(out, key, seen)
            if mask is not None:
                bad = pc.or_(bad, mask)
                label = "primary key" if key == self.schema.primary_key else "unique"
                values = pc.binary_join_element_wise(
                    *[pc.cast(out.column(k), pa.string()) for k in key], "|"
                )
                failures.append((f"{'+'.join(key)}: {label}: duplicate", mask))
                self._note("+".join(key), f"{label}: duplicate", mask, numbers, values)
        count = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
        self.report.bad_rows += count
        return Conformed(out, bad, count, failures, numbers)

    def _note(
        self, column: str, check: str, mask: pa.Array, numbers: pa.Array, raw: pa.Array
    ) -> None:
        if not pc.any(mask).as_py():
            return
        rows = pc.filter(numbers, mask).to_pylist()
        values = pc.filter(raw, mask).slice(0, EXAMPLES).to_pylist()
        values += [None] * (len(rows) - len(values))
        self.report.add(column, check, rows, values)

    @staticmethod
    def _duplicates(batch: pa.RecordBatch, key: tuple[str, ...], seen: set[Any]) -> pa.Array | None:
        values = zip(*[batch.column(k).to_pylist() for k in key], strict=True)
        flags = []
        for value in values:
            if any(v is None for v in value):
                flags.append(False)  # a null in a key is reported as 'required'
                continue
            flags.append(value in seen)
            seen.add(value)
        return pa.array(flags, pa.bool_()) if any(flags) else None


def _text(column: pa.Array) -> pa.Array:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return pc.cast(column, pa.string())


def _convert(
    spec: FieldSpec, raw: pa.Array, missing: tuple[str, ...]
) -> tuple[pa.Array, list[tuple[str, pa.Array]]]:
    """The typed column and, per failed check, the mask of rows that failed it."""
    if missing:
        raw = pc.if_else(pc.is_in(raw, pa.array(missing, pa.string())), None, raw)
    present = pc.is_valid(raw)
    failures: list[tuple[str, pa.Array]] = []
    constraints = spec.constraints
    required = constraints.get("required", False)
    if required:
        failures.append(("required: empty", pc.invert(present)))
    typed, type_ok = _parse(spec, raw)
    if typed.type != spec.arrow_type():
        typed = pc.cast(typed, spec.arrow_type())
    wrong = pc.and_(present, pc.invert(pc.fill_null(type_ok, False)))
    if pc.any(wrong).as_py():
        failures.append((f"type: not a valid {spec.type}", wrong))
        typed = pc.if_else(wrong, pa.scalar(None, typed.type), typed)
    valid = pc.and_(present, pc.invert(wrong))

    def fail(check: str, mask: pa.Array) -> None:
        mask = pc.and_(valid, pc.fill_null(mask, False))
        if pc.any(mask).as_py():
            failures.append((check, mask))

    if "maxLength" in constraints:
        fail(
            f"maxLength {constraints['maxLength']}",
            pc.greater(pc.utf8_length(raw), int(constraints["maxLength"])),
        )
    if "minLength" in constraints:
        fail(
            f"minLength {constraints['minLength']}",
            pc.less(pc.utf8_length(raw), int(constraints["minLength"])),
        )
    if "pattern" in constraints:
        fail(
            f"pattern {constraints['pattern']}",
            pc.invert(pc.match_substring_regex(raw, f"^(?:{constraints['pattern']})$")),
        )
    if "enum" in constraints:
        allowed = pa.array([str(v) for v in constraints["enum"]], pa.string())
        fail("enum: not an allowed value", pc.invert(pc.is_in(raw, allowed)))
    numeric = spec.type in ("integer", "number", "year")
    for bound, compare in (("minimum", pc.less), ("maximum", pc.greater)):
        if bound in constraints and numeric:
            try:
                limit = float(constraints[bound])
            except (TypeError, ValueError):
                continue
            fail(f"{bound} {constraints[bound]}", compare(pc.cast(typed, pa.float64()), limit))
    return typed, failures


def _parse(spec: FieldSpec, raw: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(typed values, per-row 'parsed' flag) for a text column; nulls stay null."""
    kind = spec.type
    if kind == "string":
        return raw, pc.is_valid(raw)
    if kind in ("integer", "year"):
        ok = pc.match_substring_regex(raw, _YEAR if kind == "year" else _INTEGER)
        target = pa.int16() if kind == "year" else pa.int64()
        cleaned = pc.if_else(ok, pc.utf8_ltrim(raw, "+"), None)  # Arrow's cast refuses "+7"
        if kind == "integer":
            # An integer beyond 18 digits may not fit int64: refuse it as a type error.
            ok = pc.and_(ok, pc.less_equal(pc.utf8_length(pc.utf8_ltrim(raw, "+-")), 18))
            cleaned = pc.if_else(ok, pc.utf8_ltrim(raw, "+"), None)
        return pc.cast(cleaned, target), ok
    if kind == "number":
        ok = pc.match_substring_regex(raw, _NUMBER)
        return pc.cast(pc.if_else(ok, pc.utf8_ltrim(raw, "+"), None), pa.float64()), ok
    if kind == "boolean":
        true = pc.is_in(raw, pa.array(list(spec.true_values), pa.string()))
        false = pc.is_in(raw, pa.array(list(spec.false_values), pa.string()))
        ok = pc.or_(true, false)
        return pc.if_else(ok, true, None), ok
    if kind == "yearmonth":
        ok = pc.match_substring_regex(raw, _YEARMONTH)
        text = pc.replace_substring_regex(pc.if_else(ok, raw, None), _YEARMONTH, r"\1-\2")
        return text, ok
    fmt = spec.custom_format
    if kind == "date" and fmt is not None and not re.search("%[Yy]", fmt):
        # A date part on its own (e.g. %m, a month): checked in a leap year, kept as text.
        parsed = pc.strptime(
            pc.binary_join_element_wise("2000|", raw, ""), "2000|" + fmt, "s", error_is_null=True
        )
        return raw, _round_trips(parsed, raw, fmt, prefix="2000|")
    if kind == "date":
        pattern = fmt or "%Y-%m-%d"
        parsed = pc.strptime(raw, pattern, "s", error_is_null=True)
        return pc.cast(parsed, pa.date32()), _round_trips(parsed, raw, pattern)
    # datetime
    if fmt is not None:
        parsed = pc.strptime(raw, fmt, "s", error_is_null=True)
        return parsed, _round_trips(parsed, raw, fmt)
    return _iso_datetime(raw)


def _round_trips(parsed: pa.Array, raw: pa.Array, fmt: str, prefix: str = "") -> pa.Array:
    """strptime accepts 31 February (as 2 March): a value is valid only if formatting the
    parsed value again gives the text back (ignoring case, for month names)."""
    again = pc.strftime(parsed, prefix + fmt)
    if prefix:
        again = pc.utf8_slice_codeunits(again, len(prefix))
    return pc.fill_null(pc.equal(pc.utf8_upper(again), pc.utf8_upper(raw)), False)


def _iso_datetime(raw: pa.Array) -> tuple[pa.Array, pa.Array]:
    """ISO 8601 date-times, with ``T`` or a space, with or without ``Z``/offset, in UTC.
    A date alone is taken as midnight (OMOP exports write era dates so)."""
    text = pc.replace_substring_regex(raw, r"^(\d{4}-\d{2}-\d{2})$", r"\1T00:00:00")
    text = pc.replace_substring_regex(text, r"^(\d{4}-\d{2}-\d{2}) ", r"\1T")
    text = pc.replace_substring_regex(text, r"\.\d+(Z|[+-]\d{2}:?\d{2})?$", r"\1")
    text = pc.replace_substring_regex(text, r"([+-]\d{2}):(\d{2})$", r"\1\2")
    zoned = pc.strptime(
        pc.replace_substring_regex(text, "Z$", "+0000"),
        "%Y-%m-%dT%H:%M:%S%z",
        "s",
        error_is_null=True,
    )
    naive = pc.strptime(text, "%Y-%m-%dT%H:%M:%S", "s", error_is_null=True)
    parsed = pc.coalesce(pc.cast(zoned, pa.timestamp("s")), naive)
    date_part = pc.utf8_slice_codeunits(text, 0, 10)
    day = pc.strptime(date_part, "%Y-%m-%d", "s", error_is_null=True)
    ok = pc.and_(pc.is_valid(parsed), _round_trips(day, date_part, "%Y-%m-%d"))
    return parsed, ok
