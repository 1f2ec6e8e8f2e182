"""Column profiles for the catalogue, safe to show to people without a permit.

A profile is computed from the published parts themselves (read back and decrypted
before the version is committed, which also proves that every part reads with the
hub's keys). Every count under the hub's small-count threshold (default 10) is
suppressed, shown as ``None`` with ``"suppressed": true``: the catalogue is public
inside the hub, and a count of 3 can single a person out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

THRESHOLD = 10
MAX_CATEGORIES = 10_000
TOP = 5
BINS = 10


def _safe(count: int, threshold: int) -> int | None:
    """``count`` if it may be shown: zero, or at least the threshold."""
    return count if count == 0 or count >= threshold else None


def _many(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether the column's first rows alone hold more than twice MAX_CATEGORIES distinct
    values: counting the values of a column of identifiers (a million distinct) would be
    the profile's largest cost, only to be thrown away."""
    head = column.slice(0, 8 * MAX_CATEGORIES)
    if len(head) <= 2 * MAX_CATEGORIES:
        return False
    if pa.types.is_dictionary(head.type):  # count_distinct takes the values, not codes
        head = pc.cast(head, head.type.value_type)
    return bool(pc.count_distinct(head).as_py() > 2 * MAX_CATEGORIES)


class _Column:
    def __init__(self, field: pa.Field) -> None:
        self.field = field
        self.nulls = 0
        self.minimum: Any = None
        self.maximum: Any = None
        self.categories: Counter[Any] = Counter()
        self.too_many = False

    @property
    def numeric(self) -> bool:
        t = self.field.type
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))

    @property
    def orderable(self) -> bool:
        t = self.field.type
        return self.numeric or bool(pa.types.is_temporal(t))

    def add(self, column: pa.ChunkedArray | pa.Array) -> None:
        self.nulls += column.null_count
        if pa.types.is_null(self.field.type) or len(column) == column.null_count:
            return
        if not self.too_many and _many(column):
            self.too_many = True
            self.categories.clear()
        if not self.too_many:
            counts = pc.value_counts(column.drop_null())
            if len(counts) + len(self.categories) > 2 * MAX_CATEGORIES:
                self.too_many = True  # without turning a million values into Python objects
                self.categories.clear()
                return
            for entry in counts.to_pylist():
                self.categories[entry["values"]] += entry["counts"]
            if len(self.categories) > MAX_CATEGORIES:
                self.too_many = True
                self.categories.clear()

    def bound(self, column: pa.ChunkedArray | pa.Array) -> None:
        if not self.orderable or len(column) == column.null_count:
            return
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)

    def bins(self) -> tuple[float, float] | None:
        """(low, width) of the histogram, or None when there is none to draw."""
        if not self.numeric or self.minimum is None or self.minimum == self.maximum:
            return None
        low, high = _rounded(float(self.minimum), float(self.maximum))
        if low == high:
            return None
        return low, (high - low) / BINS

    def count_bins(self, column: pa.ChunkedArray, counts: list[int]) -> None:
        bins = self.bins()
        assert bins is not None
        low, width = bins
        values = pc.cast(column.drop_null(), pa.float64())
        index = pc.min_element_wise(
            pc.cast(pc.floor(pc.divide(pc.subtract(values, low), width)), pa.int64()), BINS - 1
        )
        for entry in pc.value_counts(index).to_pylist():
            counts[entry["values"]] += entry["counts"]


class Profiler:
    """Builds a profile in one read of the data: ``add`` each part (counts, categories,
    extremes), then ``result``. A numeric column with too many distinct values for its
    histogram to come from its categories needs its bins counted once the extremes are
    known: ``second_pass`` names those columns, ``add_histograms`` counts them."""

    def __init__(self, schema: pa.Schema, *, threshold: int = THRESHOLD) -> None:
        self.columns = {f.name: _Column(f) for f in schema}
        self.threshold = threshold
        self.rows = 0
        self._histograms: dict[str, list[int]] = {}

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for name, column in self.columns.items():
            values = table.column(name)
            column.add(values)
            column.bound(values)

    def second_pass(self) -> list[str]:
        return [
            name
            for name, column in self.columns.items()
            if column.too_many and column.bins() is not None
        ]

    def add_histograms(self, table: pa.Table) -> None:
        for name in self.second_pass():
            counts = self._histograms.setdefault(name, [0] * BINS)
            self.columns[name].count_bins(table.column(name), counts)

    def result(self) -> dict[str, Any]:
        histograms = dict(self._histograms)
        for name, column in self.columns.items():
            bins = column.bins()
            if bins is None or column.too_many:
                continue
            # Exact from the categories: the same arithmetic as count_bins.
            low, width = bins
            counts = [0] * BINS
            for value, count in column.categories.items():
                counts[min(math.floor((float(value) - low) / width), BINS - 1)] += count
            histograms[name] = counts
        return _result(self.columns, histograms, self.rows, self.threshold)


def profile(
    schema: pa.Schema, read_parts: Callable[[], Iterable[pa.Table]], *, threshold: int = THRESHOLD
) -> dict[str, Any]:
    """Profile every column of the version whose parts ``read_parts()`` yields, one part
    at a time. Memory holds one part."""
    profiler = Profiler(schema, threshold=threshold)
    for table in read_parts():
        profiler.add(table)
    if profiler.second_pass():
        for table in read_parts():
            profiler.add_histograms(table)
    return profiler.result()


def _result(
    columns: dict[str, _Column], histograms: dict[str, list[int]], rows: int, threshold: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": _safe(rows, threshold), "threshold": threshold, "columns": []}
    for name, column in columns.items():
        entry: dict[str, Any] = {
            "name": name,
            "type": str(column.field.type),
            "nulls": _safe(column.nulls, threshold),
            "distinct": None if column.too_many else len(column.categories),
            "distinct_over": MAX_CATEGORIES if column.too_many else None,
        }
        if column.orderable and column.minimum is not None:
            # Dates and times only to the month: an exact extreme date can be a birth date.
            low, high = _coarse(column.minimum), _coarse(column.maximum)
            if column.numeric:
                low, high = _rounded(float(column.minimum), float(column.maximum))
                if pa.types.is_integer(column.field.type) and low == int(low) and high == int(high):
                    low, high = int(low), int(high)
            entry["min"], entry["max"] = low, high
        if not column.numeric and column.categories:
            entry["top"] = [
                {"value": _plain(value), "count": count}
                for value, count in column.categories.most_common()
                if count >= threshold
            ][:TOP]
            entry["top_suppressed"] = sum(
                1 for count in column.categories.values() if count < threshold
            )
        if name in histograms:
            low, width = column.bins() or (0.0, 0.0)
            entry["histogram"] = [
                {
                    "from": low + i * width,
                    "to": low + (i + 1) * width,
                    "count": _safe(count, threshold),
                    "suppressed": 0 < count < threshold,
                }
                for i, count in enumerate(histograms[name])
            ]
        out["columns"].append(entry)
    return out


def _rounded(low: float, high: float) -> tuple[float, float]:
    """The extremes widened to a step of the range's order of magnitude (ages 23 to 97:
    20 to 100; years 1933 to 2011: 1930 to 2020): the exact extreme of a column is often
    one person's value."""
    span = high - low
    if span > 0:
        step = 10.0 ** math.floor(math.log10(span))
    else:
        step = 10.0 ** math.floor(math.log10(abs(low))) if low else 1.0
    down = math.floor(low / step) * step
    up = math.ceil(high / step) * step
    # round() drops float noise (0.30000000000000004); + 0.0 turns -0.0 into 0.0.
    return round(down, 12) + 0.0, round(up, 12) + 0.0


def _coarse(value: Any) -> Any:
    """Dates to the month, times to the hour, numbers to two significant figures: the
    exact extreme of a column is often one person's value."""
    if hasattr(value, "year") and hasattr(value, "month"):
        return f"{value.year:04d}-{value.month:02d}"
    if hasattr(value, "hour"):
        return f"{value.hour:02d}:00"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(f"{value:.2g}") if value else 0
    return str(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value
