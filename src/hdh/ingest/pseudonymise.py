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

import duckdb
import numpy as np
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
        # Identifiers repeat across batches (a patient has many rows): the values already
        # seen are remembered per column (a column holds one type, so 1, 1.0 and True
        # never share an entry), up to cache_size values.
        self._seen: dict[str, _Seen] = {}
        self._cache_size = cache_size
        self._duck: duckdb.DuckDBPyConnection | None = None

    def pseudonym(self, value: object) -> str:
        """The pseudonym of one value (as in a column: normalised, then HMAC)."""
        return self._hash([value])[0]

    def _pseudonymise_column(self, column: pa.Array, name: str) -> pa.Array:
        """Hash each distinct value once: identifiers repeat across rows (a patient has many
        visits) and across batches. Values seen before are found without making a Python
        object per row (see ``_Seen``); only the others go through HMAC."""
        if pa.types.is_dictionary(column.type):  # a Parquet source's: its values once
            return pc.take(self._pseudonymise_column(column.dictionary, name), column.indices)
        if not _vectorised(column.type):
            return self._one_by_one(column)
        if self._duck is None:
            self._duck = duckdb.connect(config={"threads": 1})
        seen = self._seen.get(name)
        if seen is None or len(seen) > self._cache_size:
            seen = self._seen[name] = _Seen(self._duck)
        if 8 * len(seen) < len(column):
            # Few distinct values so far (a prescriber, a hospital): look up each distinct
            # value of the batch once, not every row.
            encoded = pc.dictionary_encode(column)
            return pc.take(self._lookup(seen, encoded.dictionary), encoded.indices)
        return self._lookup(seen, column)

    def _one_by_one(self, column: pa.Array) -> pa.Array:
        """For the types the vectorised lookup does not take (float16, decimal256, string
        views…): each distinct value of the batch hashed once, nothing kept."""
        values = column.to_pylist()
        distinct = list(dict.fromkeys(v for v in values if v is not None))
        hashed = dict(zip(distinct, self._hash(distinct), strict=True))
        return pa.array([None if v is None else hashed[v] for v in values], pa.string())

    def _lookup(self, seen: _Seen, column: pa.Array) -> pa.Array:
        if len(seen):
            pseudonyms, new = seen.find(column, seen.fingerprints(column))
        else:  # nothing seen yet: every value is new
            pseudonyms, new = pa.nulls(len(column), pa.string()), pc.is_valid(column)
            if not new.true_count:
                new = None
        if new is not None:
            every = column.null_count == 0 and new.true_count == len(column)
            rows = column if every else pc.filter(column, new)
            encoded = pc.dictionary_encode(rows)
            values = encoded.dictionary  # distinct, in the order they first appear
            hashed = self._hash_array(values)
            seen.add(values, hashed, seen.fingerprints(values))
            found = pc.take(hashed, encoded.indices)
            pseudonyms = found if every else pc.replace_with_mask(pseudonyms, new, found)
        if column.null_count:
            pseudonyms = pc.if_else(pc.is_valid(column), pseudonyms, pa.scalar(None, pa.string()))
        return pseudonyms

    def _hash(self, values: list[object]) -> list[str]:
        return self._digest([_normal(v) for v in values]).to_pylist()  # type: ignore[no-any-return]

    def _hash_array(self, values: pa.Array) -> pa.Array:
        """The pseudonyms of ``values`` (no nulls), as a string array."""
        return self._digest(_normalised(values))

    def _digest(self, normals: list[bytes]) -> pa.Array:
        inner, outer = self._inner, self._outer
        digests: list[bytes] = []
        append = digests.append
        for normal in normals:
            h = inner.copy()
            h.update(normal)
            o = outer.copy()
            o.update(h.digest())
            append(o.digest())
        # The first PSEUDONYM_HEX hex digits of each digest, in lower case, laid out as an
        # Arrow string array directly: every pseudonym has the same length.
        raw = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)[:, : PSEUDONYM_HEX // 2]
        text = _HEX_DIGITS[raw].tobytes()
        end = PSEUDONYM_HEX * len(digests)
        # A string array's offsets are 32-bit: 67 million pseudonyms, far above a batch.
        assert end <= np.iinfo(np.int32).max, "too many values to hash at once"
        offsets = np.arange(0, end + 1, PSEUDONYM_HEX, dtype=np.int32)
        return pa.Array.from_buffers(
            pa.string(), len(digests), [None, pa.py_buffer(offsets), pa.py_buffer(text)]
        )

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


def _vectorised(kind: pa.DataType) -> bool:
    """Whether ``_Seen`` takes columns of this type (DuckDB fingerprints it, Arrow
    filters and compares it)."""
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or kind in (pa.float32(), pa.float64())
        or pa.types.is_decimal128(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
    )


#: Each byte's two lower-case hex digits, as ASCII codes.
_HEX_DIGITS = np.frombuffer(bytes(range(256)).hex().encode("ascii"), np.uint8).reshape(256, 2)
#: The ASCII characters that Python's ``str.split()`` takes for whitespace.
_ASCII_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f ]"
_SPACE_BYTES = np.array([chr(b).isspace() for b in range(128)] + [False] * 128)


def _normalised(values: pa.Array) -> list[bytes]:
    """Each value as the bytes that are hashed: its text without whitespace, upper-cased,
    in UTF-8. Text that is all ASCII is normalised by Arrow (the same result as Python's
    ``split`` and ``upper``, which the other values go through: non-ASCII case mapping
    and whitespace follow Python's rules, and a pseudonym must never depend on the path
    its value took)."""
    if (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)) and (
        len(values) == 0 or pc.all(pc.string_is_ascii(values)).as_py()
    ):
        if _any_ascii_space(values):
            values = pc.replace_substring_regex(values, _ASCII_SPACE, "")
        return pc.cast(pc.ascii_upper(values), pa.large_binary()).to_pylist()  # type: ignore[no-any-return]
    return [_normal(v) for v in values.to_pylist()]


def _any_ascii_space(values: pa.Array) -> bool:
    """Whether any value of a string array holds a character of _ASCII_SPACE (a look at
    its bytes: most identifiers have none, and removing them is the slow step)."""
    _, offsets, data = values.buffers()
    if data is None or len(values) == 0:
        return False
    wide = np.int64 if pa.types.is_large_string(values.type) else np.int32
    bounds = np.frombuffer(offsets, wide)[values.offset : values.offset + len(values) + 1]
    return bool(_SPACE_BYTES[np.frombuffer(data, np.uint8)[bounds[0] : bounds[-1]]].any())


def _normal(value: object) -> bytes:
    return "".join(str(value).split()).upper().encode("utf-8")


#: A slot of _Seen's table: the fingerprint's upper half, then the position (plus one).
_UPPER = np.uint64(0xFFFF_FFFF_0000_0000)
_LOWER = np.uint64(0xFFFF_FFFF)


class _Seen:
    """The values of one column already pseudonymised, and their pseudonyms, found again
    for a whole batch in a few vectorised steps instead of one dictionary lookup per row.

    Each value has a 64-bit fingerprint (DuckDB's ``hash``). An open-addressing table
    (linear probing, at most a quarter full: few rows need a second look) holds, per value,
    one 64-bit word: the fingerprint's upper half and, below it, the value's position in
    the Arrow arrays of values and pseudonyms (plus one: 0 marks a free slot); the lower
    half of the fingerprint picks the slot. One gather per row finds both. A match is
    confirmed by comparing the stored value with the row's: a fingerprint shared by two
    values only means the second one is hashed again, never that it gets the first one's
    pseudonym.
    """

    def __init__(self, duck: duckdb.DuckDBPyConnection) -> None:
        self._duck = duck
        self._slots = np.zeros(1 << 16, np.uint64)
        self._fingerprints = np.zeros(0, np.uint64)  # of each value, to grow the table
        self._values: pa.Array | None = None
        self._pseudonyms: pa.Array | None = None

    def __len__(self) -> int:
        return 0 if self._values is None else len(self._values)

    def fingerprints(self, column: pa.Array) -> np.ndarray:
        self._duck.register("hdh_column", pa.table({"v": column}))
        try:
            hashes = self._duck.sql("SELECT hash(v) FROM hdh_column").to_arrow_table().column(0)
        finally:
            self._duck.unregister("hdh_column")
        out: np.ndarray = hashes.to_numpy()
        return out

    def find(self, column: pa.Array, fingerprints: np.ndarray) -> tuple[pa.Array, pa.Array | None]:
        """Each row's pseudonym where the value is known (null elsewhere), and the mask of
        the rows whose value is not known yet (None when there are none)."""
        assert self._values is not None, "nothing seen yet: every value is new"
        slots = self._slots
        mask = len(slots) - 1
        wanted = fingerprints & _UPPER
        index = (fingerprints & np.uint64(mask)).astype(np.intp)
        stored = slots[index]
        hit = (stored & _UPPER) == wanted
        hit &= stored != 0
        position = np.where(hit, stored & _LOWER, 1)
        probing = np.flatnonzero(~hit & (stored != 0))
        while probing.size:  # linear probing, for the rows whose first slot was taken
            step = (index[probing] + 1) & mask
            index[probing] = step
            stored = slots[step]
            found = ((stored & _UPPER) == wanted[probing]) & (stored != 0)
            position[probing[found]] = stored[found] & _LOWER
            hit[probing[found]] = True
            probing = probing[~found & (stored != 0)]
        at = pa.array(position.astype(np.int64) - 1)
        same = pc.and_kleene(pa.array(hit), pc.equal(pc.take(self._values, at), column))
        unknown = pc.and_(pc.invert(pc.fill_null(same, False)), pc.is_valid(column))
        pseudonyms = pc.take(self._pseudonyms, at)
        return pseudonyms, unknown if pc.any(unknown).as_py() else None

    def add(self, values: pa.Array, pseudonyms: pa.Array, fingerprints: np.ndarray) -> None:
        start = len(self)
        self._values = values if self._values is None else pa.concat_arrays([self._values, values])
        self._pseudonyms = (
            pseudonyms
            if self._pseudonyms is None
            else pa.concat_arrays([self._pseudonyms, pseudonyms])
        )
        self._fingerprints = np.concatenate([self._fingerprints, fingerprints])
        # Positions (plus one) fill a slot's lower 32 bits; cache_size keeps them far below.
        assert len(self) < _LOWER, "more values than a slot can point to"
        if 4 * len(self) > len(self._slots):  # grow: at most a quarter full
            size = len(self._slots)
            while 4 * len(self) > size:
                size *= 2
            self._slots = np.zeros(size, np.uint64)
            self._place(self._fingerprints, np.arange(len(self), dtype=np.uint64))
        else:
            self._place(fingerprints, np.arange(start, len(self), dtype=np.uint64))

    def _place(self, fingerprints: np.ndarray, positions: np.ndarray) -> None:
        mask = len(self._slots) - 1
        index = (fingerprints & np.uint64(mask)).astype(np.intp)
        words = (fingerprints & _UPPER) | (positions + np.uint64(1))
        while words.size:
            free = np.flatnonzero(self._slots[index] == 0)
            at = index[free]
            # Of the values aiming at one free slot, one word lands there (which one is up
            # to NumPy; words are unique, positions being part of them, so it is read
            # back); the others, and those whose slot was taken, try the next slot.
            self._slots[at] = words[free]
            placed = np.zeros(words.size, bool)
            placed[free] = self._slots[at] == words[free]
            left = ~placed
            index = (index[left] + 1) & mask
            words = words[left]


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
