"""Statistical disclosure checks of tables, cell by cell.

A table is described by its *evidence*: for each cell, how many people (rows) it holds
and, for a table of magnitudes, the statistics of the values behind it (sum, largest
value, sum of the largest two and of the largest ``nk_n``, how many are negative).
``evidence`` computes it from the rows (inside the project, where the rows are);
``assess`` decides, from the evidence alone and the hub's thresholds, which cells are
disclosive and why; ``suppress`` hides them, then hides more cells so that no hidden
cell can be recovered from its row or column total.

The checks and their defaults follow ACRO (the SACRO project's output checker, version
1.0.2) so that an output checked there and here gets the same verdict:

=============  ==========================================================  ===========
check          a cell is disclosive when                                    applies to
=============  ==========================================================  ===========
threshold      fewer than ``safe_threshold`` (10) people                    all but std
zero           no one at all (``zeros_are_disclosive``)                     count,
                                                                            median,
                                                                            min, max
nk-dominance   the largest ``nk_n`` (2) values make ``nk_k`` (90 %) or      sum, mean
               more of the total
p-ratio        what is left after the largest two values is less than       sum, mean
               ``p_ratio`` (10 %) of the largest
negative       (dominance is undefined) the cell holds a negative value,    sum, mean
               when any cell of the table does
dof            fewer than ``safe_dof_threshold`` (10) degrees of freedom    std
               (people - 1)
extreme        always: the value is one person's                            min, max
full           it holds everyone of its row or of its column (of two or     count
               more cells): all of them share the other variable's value
=============  ==========================================================  ===========

``extreme`` and ``full`` are where hdh departs from ACRO. ACRO checks a minimum or
maximum only for small and empty cells, but the smallest or largest value of a cell is,
by definition, one person's own value, however many people the cell holds. And ACRO
does not look for full cells: hiding the empty cells next to one does not help, since
the line's total still equals the full cell (everyone in the row "has" the column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

AGGFUNCS = ("count", "sum", "mean", "median", "std", "min", "max")
#: The statistics of a cell's values that the dominance checks need.
DOMINANCE_STATS = ("sum", "max", "top_2_sum", "top_n_sum", "negative")

#: Which checks each kind of cell statistic gets.
CHECKS: dict[str, tuple[str, ...]] = {
    "count": ("threshold", "zero", "full"),
    "median": ("threshold", "zero"),
    "min": ("threshold", "zero", "extreme"),
    "max": ("threshold", "zero", "extreme"),
    "sum": ("threshold", "nk-dominance", "p-ratio"),
    "mean": ("threshold", "nk-dominance", "p-ratio"),
    "std": ("dof",),
}


@dataclass(frozen=True)
class Thresholds:
    """The hub's disclosure thresholds (defaults as ACRO's)."""

    safe_threshold: int = 10
    safe_dof_threshold: int = 10
    nk_n: int = 2
    nk_k: float = 0.9
    p_ratio: float = 0.1
    zeros_are_disclosive: bool = True
    round_base: int = 5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evidence:
    """Per-cell statistics of a table, each a DataFrame of the table's shape."""

    aggfunc: str
    count: pd.DataFrame
    stats: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: The label of the totals row and column, when the table has them.
    margins_name: str | None = None


def _top_sum(n: int) -> Any:
    def top(values: pd.Series) -> float:
        if values.dtype.kind not in "iuf":
            return 0.0
        return float(values.nlargest(n).sum())

    top.__name__ = f"top_{n}_sum"
    return top


def _negatives(values: pd.Series) -> int:
    return int((values < 0).sum()) if values.dtype.kind in "iuf" else 0


def _axis(data: pd.DataFrame, names: Sequence[str]) -> list[pd.Series]:
    return [data[name] for name in names]


def evidence(
    data: pd.DataFrame,
    index: Sequence[str],
    columns: Sequence[str],
    values: str | None = None,
    aggfunc: str = "count",
    *,
    margins: bool = False,
    thresholds: Thresholds | None = None,
) -> Evidence:
    """The evidence for a table of ``data`` with rows ``index`` and columns ``columns``:
    a frequency table (``aggfunc="count"``) or ``aggfunc`` of ``values`` per cell."""
    limits = thresholds or Thresholds()
    if aggfunc not in AGGFUNCS:
        raise ValueError(f"aggfunc must be one of {', '.join(AGGFUNCS)}, not {aggfunc!r}")
    if aggfunc != "count" and values is None:
        raise ValueError(f"aggfunc {aggfunc!r} needs values: the column to aggregate")
    rows, cols = _axis(data, index), _axis(data, columns)

    def table(func: Any = None) -> pd.DataFrame:
        if func is None:
            return pd.crosstab(rows, cols, margins=margins, dropna=False)
        return pd.crosstab(
            rows, cols, values=data[values], aggfunc=func, margins=margins, dropna=False
        )

    count = table()
    found = Evidence(aggfunc, count, margins_name="All" if margins else None)
    if aggfunc in ("sum", "mean"):
        found.stats = {
            "sum": table("sum").fillna(0),
            "max": table("max"),
            "top_2_sum": table(_top_sum(2)).fillna(0),
            "top_n_sum": table(_top_sum(limits.nk_n)).fillna(0),
            "negative": table(_negatives).fillna(0),
        }
    return found


def assess(found: Evidence, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """For each cell, the checks that found it disclosive (an empty list when none)."""
    limits = thresholds or Thresholds()
    count = found.count
    masks: dict[str, pd.DataFrame] = {}
    for check in CHECKS[found.aggfunc]:
        if check == "threshold":
            masks[check] = count < limits.safe_threshold
        elif check == "zero":
            masks[check] = (count == 0) & limits.zeros_are_disclosive
        elif check == "dof":
            masks[check] = (count - 1) < limits.safe_dof_threshold
        elif check == "extreme":
            masks[check] = count > 0
        elif check == "full":
            masks[check] = _full(count, found.margins_name)
        elif check in ("nk-dominance", "p-ratio"):
            stats = found.stats
            negative = stats["negative"] > 0
            if negative.to_numpy().any():
                masks[check] = negative  # dominance is not defined with negative values
            elif check == "nk-dominance":
                masks[check] = (stats["top_n_sum"] / stats["sum"]) >= limits.nk_k
            else:
                top = stats["max"]
                rest = stats["sum"] - stats["top_2_sum"]
                ratio = (rest / top.where(top != 0)).where(top != 0, rest).fillna(1.0)
                masks[check] = ratio < limits.p_ratio
    reasons = pd.DataFrame(
        [[[] for _ in count.columns] for _ in count.index],
        index=count.index,
        columns=count.columns,
        dtype=object,
    )
    for check, mask in masks.items():
        flagged = mask.reindex(index=count.index, columns=count.columns).fillna(False)
        for i, j in zip(*flagged.to_numpy().nonzero(), strict=True):
            reasons.iat[i, j].append(check)
    return reasons


def _full(count: pd.DataFrame, margins_name: str | None) -> pd.DataFrame:
    """Cells holding every person of their row or column (lines of two or more cells,
    totals left out)."""

    def margin(label: Any) -> bool:
        first = label[0] if isinstance(label, tuple) else label
        return margins_name is not None and first == margins_name

    inner = count.loc[
        [r for r in count.index if not margin(r)], [c for c in count.columns if not margin(c)]
    ]
    mask = pd.DataFrame(False, index=count.index, columns=count.columns)
    if inner.empty:
        return mask
    rows, cols = inner.sum(axis=1), inner.sum(axis=0)
    for r in inner.index:
        for c in inner.columns:
            people = inner.at[r, c]
            if people > 0 and (
                (len(inner.columns) > 1 and people == rows[r])
                or (len(inner.index) > 1 and people == cols[c])
            ):
                mask.at[r, c] = True
    return mask


def flagged(reasons: pd.DataFrame) -> pd.DataFrame:
    """True where a cell failed a check."""
    return reasons.map(bool)


def secondary(primary: pd.DataFrame, table: pd.DataFrame, margins_name: str | None) -> pd.DataFrame:
    """More cells to hide, so that no hidden cell can be worked out from the others of
    its row or column and the line's total. A line is a row or a column; with margins,
    the totals row and column are lines too, and each line includes its total. Every
    line that hides exactly one cell hides one more (its smallest visible inner cell, or
    else its total), until no line hides exactly one."""
    hide = primary.copy()

    def margin(label: Any) -> bool:
        first = label[0] if isinstance(label, tuple) else label
        return margins_name is not None and first == margins_name

    inner_rows = [r for r in table.index if not margin(r)]
    inner_cols = [c for c in table.columns if not margin(c)]
    has_margins = len(inner_rows) < len(table.index)
    rows = list(table.index) if has_margins else inner_rows
    cols = list(table.columns) if has_margins else inner_cols
    lines = [[(r, c) for c in cols] for r in rows] + [[(r, c) for r in rows] for c in cols]
    while True:
        changed = False
        for cells in lines:
            if len(cells) < 2:
                continue
            hidden = [cell for cell in cells if hide.at[cell]]
            if len(hidden) != 1:
                continue
            visible = [cell for cell in cells if not hide.at[cell]]
            inner = [cell for cell in visible if not (margin(cell[0]) or margin(cell[1]))]
            smallest = min(inner or visible, key=lambda cell: _size(table.at[cell]))
            hide.at[smallest] = True
            changed = True
        if not changed:
            return hide


def _size(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(number) else abs(number)


def suppress(
    table: pd.DataFrame,
    reasons: pd.DataFrame,
    *,
    margins_name: str | None = None,
    round_base: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table with disclosive cells hidden (NaN), then the cells hidden so that they
    cannot be recovered from totals, then (``round_base``) the rest rounded to that
    base; and the mask of hidden cells."""
    primary = flagged(reasons).reindex(index=table.index, columns=table.columns).fillna(False)
    hide = secondary(primary.astype(bool), table, margins_name)
    safe = table.astype(float).mask(hide)
    if round_base:
        safe = (safe / round_base).round() * round_base
    return safe, hide
