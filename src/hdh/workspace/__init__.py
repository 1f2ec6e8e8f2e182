"""The researcher's library, for use inside a job (``hdh job submit PROJECT FILE.py``)::

    import hdh.workspace as ws

    con = ws.connect()                      # DuckDB: one view per permitted dataset
    visits = ws.table("visits")             # a pyarrow Table (as_="pandas" or "polars")
    con.sql("select ward, count(*) n from visits group by 1").write_csv(
        str(ws.output("per_ward.csv"))
    )

The hub prepares the job's data before the job starts: the project's extract of every
dataset its permits allow (allowed columns and rows, the project's pseudonyms), as
read-only Parquet files. The job holds no key and reaches no storage, network or hub
file; what it writes with ``ws.output`` stays in the project until it passes the
airlock. This module imports nothing of the hub itself.
"""

from __future__ import annotations

import os
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
