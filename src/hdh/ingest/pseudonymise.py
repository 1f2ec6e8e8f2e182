"""Per-column rules applied at the door: keep, drop, pseudonymise, or generalise.

``pseudonymise`` replaces a value by a keyed HMAC-SHA-256 of its normalised form
(trimmed, upper-cased, inner spaces removed) under the hub's pseudonymisation secret
of a given version: the same person gets the same pseudonym in every dataset, so
datasets join; without the secret, a pseudonym cannot be computed from a value.
Generalisations: ``year`` and ``month`` for dates, ``department`` for French postcodes
(first two characters; 2A/2B for Corsica are kept as written), ``band10`` for ages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc

from hdh.errors import InvalidInput

ACTIONS = ("keep", "drop", "pseudonymise", "year", "month", "department", "band10")
PSEUDONYM_HEX = 32  # 128 bits


def parse_rules(items: list[str], columns: list[str]) -> dict[str, str]:
    """``["SSN=pseudonymise", "FIRST=drop"]`` into a mapping, checked against the columns."""
    rules: dict[str, str] = {}
    for item in items:
        column, sep, action = item.partition("=")
        if not sep or not column or not action:
            raise InvalidInput(
                f"rule {item!r} is not COLUMN=ACTION",
                hint=f"write e.g. SSN=pseudonymise; actions: {', '.join(ACTIONS)}",
            )
        if action not in ACTIONS:
            raise InvalidInput(
                f"rule {item!r}: {action!r} is not an action",
                hint=f"use one of {', '.join(ACTIONS)}",
            )
        if column not in columns:
            raise InvalidInput(
                f"rule {item!r}: the file has no column {column!r}",
                hint=f"its columns are: {', '.join(columns)}",
            )
        rules[column] = action
    return rules


class Pseudonymiser:
    """Applies the rules to record batches. ``secret`` is the hub's secret of ``version``."""

    def __init__(
        self, rules: Mapping[str, str], secret: bytes, version: int, cache_size: int = 2_000_000
    ) -> None:
        self.rules = dict(rules)
        self.version = version
        # HMAC-SHA-256 (RFC 2104) built on hashlib directly: the inner and outer states
        # are keyed once, then copied per value (hmac.HMAC costs ~4x more per call).
        key = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        # Identifiers repeat across batches (a patient has many rows): remember recent ones,
        # per column (a column holds one type, so 1, 1.0 and True never share an entry).
        # Per column: value -> position in _hashed[column], the pseudonyms in Arrow.
        self._index: dict[str, dict[object, int]] = {}
        self._hashed: dict[str, pa.Array] = {}
        self._cache_size = cache_size

    def pseudonym(self, value: object) -> str:
        """The pseudonym of one value (as in a column: normalised, then HMAC)."""
        return self._hash([value])[0]

    def _pseudonymise_column(self, column: pa.Array, name: str) -> pa.Array:
        """Hash each distinct value once: identifiers repeat across rows (a patient has many
        visits) and across batches. Known values are found by one C-level ``map`` over the
        batch's distinct values, which gives positions into an Arrow array of the
        pseudonyms already computed; only new values go through HMAC."""
        encoded = pc.dictionary_encode(column)
        values = encoded.dictionary.to_pylist()
        if not values:  # no value at all: nothing to hash
            return pa.nulls(len(column), pa.string())
        index = self._index.setdefault(name, {})
        if len(index) + len(values) > self._cache_size:
            index.clear()
            self._hashed.pop(name, None)
        positions: list[int | None] = list(map(index.get, values))
        if None in positions:
            missing = [i for i, p in enumerate(positions) if p is None]
            fresh = [values[i] for i in missing]  # distinct: they come from the dictionary
            start = len(index)
            for offset, (i, value) in enumerate(zip(missing, fresh, strict=True)):
                positions[i] = index[value] = start + offset
            hashed = pa.array(self._hash(fresh), pa.string())
            known = self._hashed.get(name)
            self._hashed[name] = hashed if known is None else pa.concat_arrays([known, hashed])
        keys = pc.take(self._hashed[name], pa.array(positions, pa.int64()))
        return pc.take(keys, encoded.indices)

    def _hash(self, values: list[object]) -> list[str]:
        inner, outer = self._inner, self._outer
        out = []
        for value in values:
            h = inner.copy()
            h.update("".join(str(value).split()).upper().encode("utf-8"))
            o = outer.copy()
            o.update(h.digest())
            out.append(o.hexdigest()[:PSEUDONYM_HEX])
        return out

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        fields = []
        for f in schema:
            action = self.rules.get(f.name, "keep")
            if action == "drop":
                continue
            if action == "pseudonymise":
                f = pa.field(f.name, pa.string())
            elif action in ("year", "band10"):
                f = pa.field(f.name, pa.int32())
            elif action in ("month", "department"):
                f = pa.field(f.name, pa.string())
            fields.append(f)
        return pa.schema(fields)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = []
        names = []
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            action = self.rules.get(name, "keep")
            if action == "drop":
                continue
            names.append(name)
            columns.append(self._convert(action, column, name))
        return pa.RecordBatch.from_arrays(columns, names=names)

    def _convert(self, action: str, column: pa.Array, name: str) -> pa.Array:
        if action == "keep":
            return column
        if action == "pseudonymise":
            return self._pseudonymise_column(column, name)
        if action in ("year", "month"):
            values = column.to_pylist()
            out: list[object] = []
            for v in values:
                moment = _as_date(v)
                if moment is None:
                    out.append(None)
                elif action == "year":
                    out.append(moment.year)
                else:
                    out.append(f"{moment.year:04d}-{moment.month:02d}")
            return pa.array(out, pa.int32() if action == "year" else pa.string())
        if action == "department":
            text = pc.cast(column, pa.string())
            return pc.utf8_slice_codeunits(pc.utf8_lpad(text, 5, "0"), 0, 2)
        # band10
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise InvalidInput(
                f"column {name!r} holds {column.type}, and band10 needs ages in years",
                hint="use band10 only on a numeric age column",
            )
        ages = pc.cast(column, pa.float64())
        return pc.cast(pc.multiply(pc.floor(pc.divide(ages, 10)), 10), pa.int32())


class Links:
    """For a version pseudonymised under a newer secret than the hub's oldest (the
    anchor): which anchor pseudonym each of its pseudonyms stands for. Computed while
    the identifiers pass through ingestion, never from stored data."""

    def __init__(self, anchor: Pseudonymiser) -> None:
        self.anchor_version = anchor.version
        self._anchor = anchor
        self._pairs: dict[str, str] = {}

    def add(self, raw: pa.Array | pa.ChunkedArray, pseudonyms: pa.Array | pa.ChunkedArray,
            name: str) -> pa.Array:  # fmt: skip
        """``raw``: a column as read; ``pseudonyms``: the same rows pseudonymised. Returns
        the rows' anchor pseudonyms."""
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks()
        anchored = self._anchor._pseudonymise_column(raw, name)
        pairs = pa.table({"p": pseudonyms, "a": anchored}).group_by(["p", "a"]).aggregate([])
        for mine, theirs in zip(pairs["p"].to_pylist(), pairs["a"].to_pylist(), strict=True):
            if mine is not None:
                self._pairs[mine] = theirs
        return anchored

    def __len__(self) -> int:
        return len(self._pairs)

    def table(self) -> pa.Table:
        return pa.table(
            {"pseudonym": list(self._pairs), "anchor": list(self._pairs.values())},
            schema=pa.schema([("pseudonym", pa.string()), ("anchor", pa.string())]),
        )


def _as_date(value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value).strip()
    for parse in (date.fromisoformat, lambda t: datetime.fromisoformat(t).date()):
        try:
            return parse(text)
        except ValueError:
            continue
    raise InvalidInput(
        f"{text!r} is not a date that can be generalised",
        hint="generalise only date columns (YYYY-MM-DD)",
    )
