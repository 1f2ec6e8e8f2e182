"""The researcher's library, for use inside a job (``hdh job submit PROJECT FILE.py``)::

    import hdh.workspace as ws

    con = ws.connect()                      # DuckDB: one view per permitted dataset
    visits = ws.table("visits")             # a pyarrow Table (as_="pandas" or "polars")
    con.sql("select ward, count(*) n from visits group by 1").write_csv(
        str(ws.output("per_ward.csv"))
    )

For tables meant to leave the project, ``ws.crosstab`` and ``ws.pivot_table`` build the
table and its disclosure evidence together (like ACRO's wrappers), and ``.save(name)``
writes both for the airlock::

    grants = ws.crosstab(frame, index="year", columns="grant_type",
                         values="inc_grants", aggfunc="mean")
    print(grants.report)                    # which cells fail which check
    grants.save("grants_by_year.csv")       # the table + grants_by_year.csv.sdc.json

The hub prepares the job's data before the job starts: the project's extract of every
dataset its permits allow (allowed columns and rows, the project's pseudonyms), as
read-only Parquet files. The job holds no key and reaches no storage, network or hub
file; what it writes with ``ws.output`` stays in the project until it passes the
airlock. This module imports nothing of the hub itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_ENV = "HDH_JOB_DATA"
OUTPUT_ENV = "HDH_JOB_OUTPUT"
MEMORY_ENV = "HDH_JOB_MEMORY_MB"


class NotInAJob(RuntimeError):
    """The library was used outside a job."""


def _folder(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise NotInAJob(
            "hdh.workspace works inside a job (hdh job submit PROJECT FILE.py); "
            "outside one, query a project with hdh query PROJECT SQL"
        )
    return Path(value)


def tables() -> list[str]:
    """The datasets this job may read, by name (``visits``, ``egb.eb_prs_f``)."""
    return sorted(p.name.removesuffix(".parquet") for p in _folder(DATA_ENV).glob("*.parquet"))


def _path(name: str) -> Path:
    known = tables()
    if name not in known:
        raise KeyError(
            f"this job has no dataset {name!r}; its datasets are: {', '.join(known) or 'none'}"
        )
    return _folder(DATA_ENV) / f"{name}.parquet"


def table(name: str, as_: str = "arrow") -> Any:
    """The dataset ``name`` as a pyarrow Table, or ``as_="pandas"`` / ``"polars"``."""
    import pyarrow.parquet as pq

    data = pq.read_table(_path(name))
    if as_ == "arrow":
        return data
    if as_ == "pandas":
        return data.to_pandas()
    if as_ == "polars":
        import polars  # type: ignore[import-not-found]  # optional: pip install polars

        return polars.from_arrow(data)
    raise ValueError(f"as_ must be 'arrow', 'pandas' or 'polars', not {as_!r}")


def output(name: str) -> Path:
    """A path in the job's output folder (sub-folders are created); the file is kept in
    the project when the job ends."""
    root = _folder(OUTPUT_ENV).resolve()
    path = (root / name).resolve()
    if root not in path.parents:
        raise ValueError(f"{name!r} is outside the output folder; give a relative name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def connect() -> Any:
    """An in-memory DuckDB connection with one view per dataset of the job, reading
    only the job's data and output folders, its settings locked."""
    import duckdb

    data, out = _folder(DATA_ENV).resolve(), _folder(OUTPUT_ENV).resolve()
    memory = os.environ.get(MEMORY_ENV)
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            **({"memory_limit": f"{int(int(memory) * 0.6)}MB"} if memory else {}),
        },
    )
    for name in tables():
        schema, _, view = name.rpartition(".")
        target = f'"{schema}"."{view}"' if schema else f'"{view}"'
        if schema:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        path = str(data / f"{name}.parquet").replace("'", "''")
        con.execute(f"CREATE VIEW {target} AS SELECT * FROM read_parquet('{path}')")
    con.execute(f"SET allowed_directories = ['{data}/', '{out}/']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


DECLARATION_SUFFIX = ".sdc.json"


@dataclass
class CheckedTable:
    """A table, its per-cell disclosure evidence and what the checks found (with the
    default thresholds; the airlock checks again with the hub's)."""

    kind: str  # "frequency" or "magnitude"
    table: Any  # pandas DataFrame: the full table (it stays in the project)
    evidence: Any  # hdh.airlock.sdc.Evidence
    report: Any  # pandas DataFrame: per cell, the checks that failed
    definition: dict[str, Any]

    @property
    def safe(self) -> Any:
        """The table as it could leave: failing cells hidden, then the cells hidden so
        that none can be worked out from totals."""
        from hdh.airlock import sdc

        margins = "All" if self.definition["margins"] else None
        return sdc.suppress(self.table, self.report, margins_name=margins)[0]

    def save(self, name: str) -> Path:
        """Write the full table as CSV (``name``) and its declaration
        (``name.sdc.json``: what the table is, and the evidence of each cell)."""
        if not name.endswith(".csv"):
            raise ValueError(f"{name!r}: a checked table is saved as CSV (NAME.csv)")
        path = output(name)
        self.table.to_csv(path)
        declaration = {
            "format": "hdh-sdc/1",
            "kind": self.kind,
            **self.definition,
            "rows": [_label(r) for r in self.table.index],
            "columns": [_label(c) for c in self.table.columns],
            "count": self.evidence.count.to_numpy().tolist(),
            "stats": {k: v.to_numpy().tolist() for k, v in self.evidence.stats.items()},
        }
        output(name + DECLARATION_SUFFIX).write_text(
            json.dumps(declaration, indent=1, default=float), encoding="utf-8"
        )
        return path


def _label(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, tuple) else str(value)


def _frame(data: Any) -> Any:
    if isinstance(data, str):
        return table(data, as_="pandas")
    return data


def _names(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def crosstab(
    data: Any,
    index: str | Sequence[str],
    columns: str | Sequence[str],
    values: str | None = None,
    aggfunc: str = "count",
    *,
    margins: bool = False,
) -> CheckedTable:
    """A frequency table (people per cell) or a table of ``aggfunc`` of ``values`` per
    cell (sum, mean, median, std, min, max), of ``data`` (a pandas DataFrame or a
    dataset's name), checked cell by cell."""
    import pandas as pd

    from hdh.airlock import sdc

    frame = _frame(data)
    rows, cols = _names(index), _names(columns)
    found = sdc.evidence(frame, rows, cols, values, aggfunc, margins=margins)
    if aggfunc == "count":
        result = found.count
    else:
        result = pd.crosstab(
            [frame[r] for r in rows], [frame[c] for c in cols], values=frame[values],
            aggfunc=aggfunc, margins=margins, dropna=False,
        )  # fmt: skip
    return CheckedTable(
        "frequency" if aggfunc == "count" else "magnitude",
        result,
        found,
        sdc.assess(found),
        {
            "index": rows, "columns_by": cols, "values": values, "aggfunc": aggfunc,
            "margins": margins,
        },
    )  # fmt: skip


def pivot_table(
    data: Any,
    index: str | Sequence[str],
    columns: str | Sequence[str],
    values: str | None = None,
    aggfunc: str = "count",
    *,
    margins: bool = False,
) -> CheckedTable:
    """As ``crosstab``, in pandas' ``pivot_table`` words; one statistic per table."""
    if not isinstance(aggfunc, str):
        raise ValueError("one statistic per table: make one table for each aggfunc")
    return crosstab(data, index, columns, values, aggfunc, margins=margins)


def model_summary(model: Any, name: str) -> Path:
    """Save a fitted model's summary (``name``, a ``.txt`` file) with its declaration
    for the airlock: the residual degrees of freedom, which must reach the hub's
    threshold (10 by default). ``model`` is a fitted statsmodels result, or anything
    with ``df_resid`` and ``summary()``."""
    if not name.endswith(".txt"):
        raise ValueError(f"{name!r}: a model summary is saved as text (NAME.txt)")
    try:
        dof = float(model.df_resid)
        text = str(model.summary())
    except AttributeError:
        raise TypeError(
            "model_summary needs a fitted model with df_resid and summary() (a statsmodels result)"
        ) from None
    path = output(name)
    path.write_text(text, encoding="utf-8")
    declaration = {"format": "hdh-sdc/1", "kind": "model", "residual_dof": dof}
    output(name + DECLARATION_SUFFIX).write_text(json.dumps(declaration), encoding="utf-8")
    return path
