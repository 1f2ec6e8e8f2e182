"""The governed connection: SQL on exactly what a project's permits allow, and nothing else.

For a query, each dataset it names (``visits``, or ``egb.eb_prs_f`` for a table of a
collection) is read through the project's permit: ``permits.access`` decides (or
refuses, audited) and the project's extract of the permitted version (its allowed
columns and rows, identifiers as the project's pseudonyms, see
``hdh.workspace.extracts``) is exposed to an in-memory DuckDB as a view of that name,
scanned from the encrypted Parquet through ``pyarrow.dataset`` with projection and filter
pushdown. The connection is then locked down before the researcher's SQL runs: no file
system or network access (``enable_external_access = false``: no ``read_csv``,
``read_parquet``, ``COPY … TO``, ``ATTACH``, ``INSTALL``/``LOAD``, ``EXPORT``), no
extension loading, no scans of Python variables, and ``lock_configuration = true`` so
that ``SET`` cannot undo any of it. Each query has limits: threads, memory, time, and
rows returned. Every query is audited (``workspace.query``: who, project, SQL, datasets,
rows, duration, outcome).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from sqlalchemy import select

from hdh import audit
from hdh.audit.chain import Outcome
from hdh.catalog.models import Dataset
from hdh.errors import HubError, InvalidInput, PermissionDenied
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.workspace.extracts import extract_for
from hdh.workspace.tables import check_table_name, load_table, save_table

MAX_ROWS = 10_000
TIMEOUT_S = 120.0
MEMORY_LIMIT = "2GB"
THREADS = 2


class QueryRefused(PermissionDenied):
    """The SQL asked for something the workspace does not allow (files, network,
    extensions, configuration)."""

    code = "query_refused"


class QueryFailed(InvalidInput):
    code = "query_failed"


@dataclass
class QueryResult:
    table: pa.Table
    truncated: bool
    datasets: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _dataset_names(hub: Hub) -> set[str]:
    with hub.read() as session:
        return set(session.scalars(select(Dataset.name)))


def _named(sql: str, datasets: set[str]) -> tuple[list[str], list[str]]:
    """The hub datasets the SQL names (collections' tables as SCHEMA.TABLE), and the
    project's saved tables it names (``saved.NAME``)."""
    try:
        names = duckdb.get_table_names(sql, qualified=True)
    except duckdb.Error:
        names = set(re.findall(r"[A-Za-z0-9_.\-\"]+", sql))
    found: list[str] = []
    saved: list[str] = []
    for raw in sorted(names):
        # Qualified names come with their alias: 'condition_occurrence AS co'.
        name = re.sub(r"\s+AS\s+.*$", "", raw, flags=re.IGNORECASE | re.DOTALL).replace('"', "")
        if name.startswith("main."):
            name = name[5:]
        if name.startswith("saved.") and name[6:] not in saved:
            saved.append(name[6:])
        elif name in datasets and name not in found:
            found.append(name)
    return found, saved


#: What an interactive query may be: one statement that returns rows.
QUERY_STATEMENTS = frozenset(
    {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.MULTI}
)


def _check_statements(sql: str, queries_only: bool) -> None:
    """Refuse SQL that does not parse, and (``queries_only``) anything but one query."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryFailed(f"the SQL does not parse: {_first(exc)}", hint="fix the SQL") from None
    if not statements:
        raise InvalidInput("the query is empty", hint="give an SQL query")
    if not queries_only:
        return
    if len(statements) > 1:
        raise QueryRefused(
            f"only one query at a time is allowed here ({len(statements)} statements given)",
            hint="send them one at a time",
        )
    kind = statements[0].type
    if kind not in QUERY_STATEMENTS:
        raise QueryRefused(
            f"only queries are allowed here, not {kind.name} statements",
            hint="to keep a result, add --save NAME to a query",
        )


def _connect(limit_memory: str, threads: int) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(
        ":memory:",
        config={
            "threads": threads,
            "memory_limit": limit_memory,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "python_enable_replacements": False,
        },
    )


def _lock(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET enable_external_access = false")
    con.execute("SET allow_unsigned_extensions = false")
    con.execute("SET lock_configuration = true")


def run_query(
    hub: Hub,
    principal: Principal,
    project: str,
    sql: str,
    *,
    max_rows: int = MAX_ROWS,
    offset: int = 0,
    timeout_s: float = TIMEOUT_S,
    save: str | None = None,
    queries_only: bool = True,
) -> QueryResult:
    """Run ``sql`` in ``project``'s governed connection (see the module docstring).
    With ``queries_only`` (interactive use) it must be one query; otherwise a script of
    statements, whose last one gives the result."""
    if not sql.strip():
        raise InvalidInput("the query is empty", hint="give an SQL query")
    if offset < 0:
        raise InvalidInput("--offset must be 0 or more", hint="give the first row to show")
    if not 1 <= max_rows <= MAX_ROWS:
        raise InvalidInput(f"--limit must be 1 to {MAX_ROWS}", hint="ask for fewer rows")
    if save is not None:
        check_table_name(save)
    began = time.monotonic()
    datasets, saved = _named(sql, _dataset_names(hub))
    outcome: Outcome = "success"
    rows, error = 0, ""
    sources = list(datasets)
    try:
        _check_statements(sql, queries_only)
        con = _connect(MEMORY_LIMIT, THREADS)
        try:
            tables: list[tuple[str, object]] = []
            for name in datasets:
                extract = extract_for(hub, principal, project, name, purpose="query")
                tables.append((name, extract.scan))
            for name in saved:
                table, used = load_table(hub, principal, project, name)
                tables.append((f"saved.{name}", table))
                sources += [s for s in used if s not in sources]
            for number, (name, table) in enumerate(tables):
                hidden = f"__permitted_{number}"
                con.register(hidden, table)
                schema, _, view = name.rpartition(".")
                if schema:
                    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    con.execute(f'CREATE VIEW "{schema}"."{view}" AS SELECT * FROM {hidden}')
                else:
                    con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM {hidden}')
            _lock(con)
            table, truncated = _run(con, sql, None if save else max_rows, timeout_s, offset)
        finally:
            con.close()
        if save is not None:
            if not sources:
                raise InvalidInput(
                    "the query reads no dataset of the project", hint="save results of its data"
                )
            save_table(hub, principal, project, save, table, sources=sources, sql=sql)
            truncated = table.num_rows > offset + max_rows
            table = table.slice(offset, max_rows)
        rows = table.num_rows
        return QueryResult(table, truncated, datasets, time.monotonic() - began)
    except PermissionDenied as exc:
        outcome, error = "denied", type(exc).__name__
        raise
    except HubError as exc:
        outcome, error = "failure", type(exc).__name__
        raise
    finally:
        with hub.transaction() as session:
            audit.record(
                session,
                actor=principal.actor,
                action="workspace.query",
                object_type="project",
                object_id=project,
                outcome=outcome,
                details={
                    "sql": sql[:4000],
                    "datasets": datasets,
                    **({"saved_tables": saved} if saved else {}),
                    **({"save": save} if save else {}),
                    "rows": rows,
                    "seconds": round(time.monotonic() - began, 3),
                    **({"error": error} if error else {}),
                },
            )


def _run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int | None,
    timeout_s: float,
    offset: int = 0,
) -> tuple[pa.Table, bool]:
    """The result (all of it when ``max_rows`` is None), or ``max_rows`` of it from row
    ``offset``, and whether more rows follow."""
    timer = threading.Timer(timeout_s, con.interrupt)
    timer.start()
    try:
        relation = con.sql(sql)
        if relation is None:  # a statement without rows (CREATE TABLE …)
            return pa.table({}), False
        if max_rows is None:
            return relation.to_arrow_table(), False
        wanted = offset + max_rows
        reader = relation.to_arrow_reader(min(wanted + 1, 1 << 16))
        kept, seen = [], 0  # only the batches' rows inside the page are kept
        for batch in reader:
            start, seen = seen, seen + batch.num_rows
            if seen > offset:
                kept.append(batch.slice(max(offset - start, 0), wanted - max(start, offset)))
            if seen > wanted:
                break
        table = pa.Table.from_batches(kept, schema=reader.schema)
        return table.slice(0, max_rows), seen > wanted
    except duckdb.InterruptException:
        raise QueryFailed(
            f"the query ran longer than {timeout_s:g} s and was stopped",
            hint="narrow it, or aggregate before returning rows",
        ) from None
    except duckdb.PermissionException as exc:
        raise QueryRefused(
            f"the workspace does not allow this ({_first(exc)})",
            hint="a project works only on its permitted datasets: no files, network or extensions",
        ) from None
    except duckdb.InvalidInputException as exc:
        if "configuration has been locked" in str(exc):
            raise QueryRefused(
                f"the workspace's settings cannot be changed ({_first(exc)})",
                hint="its limits are set by the hub",
            ) from None
        raise QueryFailed(f"the query failed: {_first(exc)}", hint="fix the SQL") from None
    except duckdb.CatalogException as exc:
        raise QueryFailed(
            f"the query failed: {_first(exc)}",
            hint="query the datasets your project's permits allow (hdh permit list)",
        ) from None
    except duckdb.Error as exc:
        raise QueryFailed(f"the query failed: {_first(exc)}", hint="fix the SQL") from None
    finally:
        timer.cancel()


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
