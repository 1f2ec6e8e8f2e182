"""The governed connection: a project's SQL sees exactly its permitted data, and every
attempt to reach anything else fails with a clear error and an audit event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hdh import audit
from hdh.crypto.envelope import TamperedObject
from hdh.errors import PermissionDenied
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest, versions
from hdh.workspace.governed import QueryFailed, QueryRefused, run_query
from tests.conftest import SHARED_DATA

SYNTHEA = SHARED_DATA / "synthea_csv_100_ma" / "csv"
ADMIN = operator("os:operator")
ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))


@pytest.fixture
def project_hub(hub: Hub) -> Hub:
    for name in ("alice", "bob"):
        add_user(hub, name, roles=["researcher"], actor=ADMIN.actor)
    ingest(
        hub, SYNTHEA / "encounters.csv", name="encounters", actor="os:steward",
        rules=["Id=pseudonymise", "PATIENT=pseudonymise"],
    )  # fmt: skip
    ingest(hub, SYNTHEA / "payers.csv", name="payers", actor="os:steward",
           rules=["NAME=keep", "ADDRESS=drop", "PHONE=drop"])  # fmt: skip
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        create_project(hub, who, project, title=project)
        transition(hub, who, project, "submit")
        transition(hub, ADMIN, project, "approve", approval_ref="ref")
        transition(hub, ADMIN, project, "activate")
    permit = request_permit(
        hub, ALICE, "cohort-a", "encounters",
        columns=["PATIENT", "ENCOUNTERCLASS", "TOTAL_CLAIM_COST"],
        row_filter="ENCOUNTERCLASS in ('wellness', 'ambulatory')",
    )  # fmt: skip
    decide(hub, ADMIN, permit.id, "grant")
    return hub


def last_query(hub: Hub) -> dict[str, object]:
    with hub.read() as session:
        [event] = audit.list_events(session, audit.EventFilter(action="workspace.query"), limit=1)
    return {"outcome": event.outcome, **json.loads(event.details)}


def test_a_query_sees_the_permitted_columns_and_rows_only(project_hub: Hub) -> None:
    result = run_query(project_hub, ALICE, "cohort-a", "select * from encounters")
    assert result.table.column_names == ["PATIENT", "ENCOUNTERCLASS", "TOTAL_CLAIM_COST"]
    classes = run_query(
        project_hub, ALICE, "cohort-a",
        "select ENCOUNTERCLASS, count(*) n from encounters group by 1 order by 1",
    ).table.to_pylist()  # fmt: skip
    assert [c["ENCOUNTERCLASS"] for c in classes] == ["ambulatory", "wellness"]
    assert last_query(project_hub)["datasets"] == ["encounters"]
    assert last_query(project_hub)["rows"] == 2
    with pytest.raises(QueryFailed, match=r'Referenced column "DESCRIPTION" not found'):
        run_query(project_hub, ALICE, "cohort-a", "select DESCRIPTION from encounters")
    few = run_query(project_hub, ALICE, "cohort-a", "select * from encounters", max_rows=5)
    assert (few.table.num_rows, few.truncated) == (5, True)


# Each escape and how the locked connection refuses it when it runs as part of a
# script (jobs); as an interactive query, any statement but a query is refused first.
ESCAPES = [
    ("select * from read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
    ("select * from glob('/*')", "file system operations are disabled"),
    ("ATTACH '/tmp/other.db' AS other", "file system operations are disabled"),
    ("INSTALL httpfs", "file system operations are disabled"),
    ("LOAD httpfs", "Loading external extensions is disabled"),
    ("COPY (select * from encounters) TO '/tmp/out.csv'", 'Cannot access file "/tmp/out.csv"'),
    ("SET enable_external_access = true", "configuration has been locked"),
    ("SET memory_limit = '100GB'", "configuration has been locked"),
]


def test_escapes_fail_clearly_and_are_audited(project_hub: Hub) -> None:
    for queries_only in (True, False):
        for sql, message in ESCAPES:
            if queries_only and not sql.startswith("select"):
                message = r"only queries are allowed here, not (ATTACH|LOAD|COPY|SET) statements"
            with pytest.raises(QueryRefused, match=message):
                run_query(project_hub, ALICE, "cohort-a", sql, queries_only=queries_only)
            event = last_query(project_hub)
            assert (event["outcome"], event["sql"]) == ("denied", sql), (sql, queries_only)
    assert not Path("/tmp/out.csv").exists()  # noqa: S108 - the path the escape tried


def test_the_connection_does_not_scan_python_variables() -> None:
    import duckdb
    import pyarrow as pa

    from hdh.workspace.governed import _connect

    hidden = pa.table({"secret": ["x"]})  # noqa: F841 - what the query tries to reach
    con = _connect("256MB", 1)
    with pytest.raises(duckdb.CatalogException, match="Table with name hidden does not exist"):
        con.sql("select * from hidden")
    assert duckdb.connect().sql("select * from hidden").fetchall() == [("x",)]  # by default


def test_bad_sql_is_clear_audited_and_leaves_the_workspace_usable(project_hub: Hub) -> None:
    cases = [
        ("selec count(*) from encounters", QueryFailed, r'the SQL does not parse: .*"selec"'),
        ("select count(*) from encouters", QueryFailed, r"Table with name encouters does not"),
        ("create table t as select 1", QueryRefused, "not CREATE statements"),
        ("select 1; select 2", QueryRefused, r"one query at a time is allowed here \(2 statements"),
        ("select 1 +", QueryFailed, "does not parse"),
    ]
    for sql, error, message in cases:
        with pytest.raises(error, match=message):
            run_query(project_hub, ALICE, "cohort-a", sql)
        event = last_query(project_hub)
        assert event["sql"] == sql
        assert event["outcome"] == ("denied" if error is QueryRefused else "failure")
        assert event["error"] == error.__name__
    # The workspace is as usable as before, and a script may hold several statements.
    assert run_query(project_hub, ALICE, "cohort-a", "select count(*) n from encounters").table
    script = run_query(
        project_hub, ALICE, "cohort-a",
        "create table w as select * from encounters where ENCOUNTERCLASS = 'wellness';"
        " select count(*) as n from w", queries_only=False,
    )  # fmt: skip
    assert script.table.to_pylist()[0]["n"] > 0


def test_a_stored_part_cannot_be_read_directly(project_hub: Hub) -> None:
    part = versions(project_hub, "encounters")[-1].manifest["parts"][0]["key"]
    path = project_hub.settings.hub_dir / "storage" / part
    assert path.is_file()
    with pytest.raises(QueryRefused, match="file system operations are disabled"):
        run_query(project_hub, ALICE, "cohort-a", f"select * from read_parquet('{path}')")


def test_data_without_a_permit_or_of_another_project_is_not_reached(project_hub: Hub) -> None:
    with pytest.raises(
        PermissionDenied,
        match=r"not permitted: project 'cohort-a' has no permit for dataset 'payers'",
    ):
        run_query(project_hub, ALICE, "cohort-a", "select * from payers")
    with pytest.raises(
        PermissionDenied, match=r"project 'cohort-b' has no permit for dataset 'encounters'"
    ):
        run_query(project_hub, BOB, "cohort-b", "select count(*) from encounters")
    with pytest.raises(
        PermissionDenied, match=r"bob is not an analyst or lead of project 'cohort-a'"
    ):
        run_query(project_hub, BOB, "cohort-a", "select count(*) from encounters")
    assert last_query(project_hub)["outcome"] == "denied"


def test_a_long_query_is_stopped(project_hub: Hub) -> None:
    with pytest.raises(QueryFailed, match=r"ran longer than 0.5 s and was stopped"):
        run_query(
            project_hub, ALICE, "cohort-a",
            "select count(*) from range(1000000000000) a, range(1000) b", timeout_s=0.5,
        )  # fmt: skip


def test_a_saved_table_is_queryable_while_its_sources_permits_hold(project_hub: Hub) -> None:
    from hdh.errors import Conflict, InvalidInput, NotFound
    from hdh.governance.permits import list_permits
    from hdh.workspace.tables import list_tables

    shown = run_query(
        project_hub, ALICE, "cohort-a",
        "select PATIENT, count(*) as visits from encounters group by PATIENT",
        max_rows=3, save="visits_per_patient",
    )  # fmt: skip
    assert (shown.table.num_rows, shown.truncated) == (3, True)  # displayed: capped
    [saved] = list_tables(project_hub, "cohort-a")
    assert saved["rows"] > 3  # kept: all of it
    assert saved["sources"] == ["encounters"]
    again = run_query(
        project_hub, ALICE, "cohort-a", "select sum(visits) as n from saved.visits_per_patient"
    )
    direct = run_query(project_hub, ALICE, "cohort-a", "select count(*) as n from encounters")
    assert again.table.to_pylist() == direct.table.to_pylist()
    with pytest.raises(Conflict, match="already has a saved table 'visits_per_patient'"):
        run_query(
            project_hub, ALICE, "cohort-a", "select 1 from encounters", save="visits_per_patient"
        )
    with pytest.raises(InvalidInput, match="table name 'Bad-Name' is not allowed"):
        run_query(project_hub, ALICE, "cohort-a", "select 1 from encounters", save="Bad-Name")
    # Another project has no such table; a revoked source permit cuts the derived table.
    with pytest.raises(NotFound, match="has no saved table 'visits_per_patient'"):
        run_query(project_hub, BOB, "cohort-b", "select * from saved.visits_per_patient")
    [permit] = [p for p in list_permits(project_hub, ADMIN) if p.project == "cohort-a"]
    decide(project_hub, ADMIN, permit.id, "revoke")
    with pytest.raises(PermissionDenied, match=r"permit #\d+ for 'encounters' was revoked"):
        run_query(project_hub, ALICE, "cohort-a", "select * from saved.visits_per_patient")


def extract_builds(hub: Hub) -> int:
    with hub.read() as session:
        events = audit.list_events(session, audit.EventFilter(action="data.read"), limit=1000)
    return sum(1 for e in events if json.loads(e.details).get("extract_built"))


def test_a_project_extract_is_built_once_and_rebuilt_when_its_basis_changes(
    project_hub: Hub, tmp_path: Path
) -> None:
    import duckdb

    from hdh.governance.erasure import erase_person
    from hdh.governance.objections import record_objection
    from hdh.workspace import extracts

    sql = "select count(*) as n from encounters"
    wanted = "ENCOUNTERCLASS in ('wellness', 'ambulatory')"

    def expected(source: Path, *, without: tuple[str, ...] = ()) -> int:
        left_out = "".join(f" and PATIENT <> '{p}'" for p in without)
        [(n,)] = duckdb.sql(
            f"select count(*) from read_csv('{source}') where {wanted}{left_out}"
        ).fetchall()
        return int(n)

    def count() -> int:
        return int(run_query(project_hub, ALICE, "cohort-a", sql).table.to_pylist()[0]["n"])

    def stored_parts() -> list[Path]:
        area = project_hub.settings.hub_dir / "storage" / "projects" / "cohort-a" / "extracts"
        return sorted(area.rglob("*.parquet"))

    assert count() == expected(SYNTHEA / "encounters.csv")
    assert count() == expected(SYNTHEA / "encounters.csv")
    assert extract_builds(project_hub) == 1  # the second query reused it
    [part] = stored_parts()
    raw = part.read_bytes()
    assert raw[-4:] == b"PARE"  # Parquet with an encrypted footer
    assert b"wellness" not in raw

    # A new version of the dataset (the permit follows "latest"): a new extract.
    smaller = tmp_path / "encounters.csv"
    lines = (SYNTHEA / "encounters.csv").read_text().splitlines(keepends=True)
    smaller.write_text("".join(lines[:801]))
    ingest(project_hub, smaller, name="encounters", actor="os:steward",
           rules=["Id=pseudonymise", "PATIENT=pseudonymise"])  # fmt: skip
    assert count() == expected(smaller)
    assert extract_builds(project_hub) == 2
    [newer] = stored_parts()
    assert newer != part  # the old extract is deleted

    # An objection and an erasure each take the person out of the next query.
    patients = [
        r[0]
        for r in duckdb.sql(
            f"select PATIENT from read_csv('{smaller}') where {wanted} "
            "group by 1 order by count(*) desc limit 2"
        ).fetchall()
    ]
    record_objection(project_hub, ADMIN, identifier=patients[0])
    assert count() == expected(smaller, without=patients[:1])
    report = erase_person(project_hub, ADMIN, identifier=patients[1])
    assert report.extracts == 1
    assert stored_parts() == []
    assert count() == expected(smaller, without=tuple(patients))

    # An extract altered in storage is refused, not read.
    [current] = stored_parts()
    damaged = bytearray(current.read_bytes())
    damaged[100] ^= 0xFF
    current.write_bytes(bytes(damaged))
    extracts.VERIFIED.clear()
    with pytest.raises(TamperedObject, match="does not match its recorded SHA-256"):
        count()


def test_results_come_in_pages(project_hub: Hub) -> None:
    sql = "select * from encounters order by PATIENT, TOTAL_CLAIM_COST, ENCOUNTERCLASS"
    whole = run_query(project_hub, ALICE, "cohort-a", sql).table.to_pylist()
    assert len(whole) > 25
    pages, offset = [], 0
    while True:
        page = run_query(project_hub, ALICE, "cohort-a", sql, max_rows=10, offset=offset)
        pages += page.table.to_pylist()
        offset += page.table.num_rows
        if not page.truncated:
            break
    assert pages == whole
    beyond = run_query(project_hub, ALICE, "cohort-a", sql, max_rows=10, offset=len(whole) + 5)
    assert (beyond.table.num_rows, beyond.truncated) == (0, False)
    from hdh.errors import InvalidInput

    with pytest.raises(InvalidInput, match="--offset must be 0 or more"):
        run_query(project_hub, ALICE, "cohort-a", sql, offset=-1)


def test_retiring_a_kek_keeps_saved_tables_readable_and_rebuilds_extracts(
    project_hub: Hub,
) -> None:
    """Saved tables and extracts are Parquet files whose keys their KEK version wraps:
    retiring a version a saved table needs is refused; extracts needing it are dropped
    first and built again, under the current keys, by the next query."""
    from sqlalchemy import select

    from hdh.crypto.service import retire_key, rotate_keys
    from hdh.errors import Conflict
    from hdh.governance.models import ProjectExtract, ProjectTable

    hub = project_hub
    rotate_keys(hub, None, actor=ADMIN.actor)  # the datasets stay under version 1
    sql = "select ENCOUNTERCLASS, count(*) n from encounters group by 1 order by 1"
    before = run_query(hub, ALICE, "cohort-a", sql, save="classes").table.to_pylist()
    with hub.read() as session:
        [table] = session.scalars(select(ProjectTable)).all()
        [extract] = session.scalars(select(ProjectExtract)).all()
    assert table.kek_versions == {"clinical": 2}
    assert extract.parts[0]["kek_versions"] == {"clinical": 2, "identifiers": 2}
    rotate_keys(hub, None, actor=ADMIN.actor)
    with pytest.raises(Conflict, match="may still wrap the keys of 1 saved table"):
        retire_key(hub, "clinical", 2, actor=ADMIN.actor)
    with hub.transaction() as session:  # a table saved before versions were recorded
        session.get(ProjectTable, table.id).kek_versions = None  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="may still wrap the keys of 1 saved table"):
        retire_key(hub, "clinical", 2, actor=ADMIN.actor)  # saved while 2 was current
    retire_key(hub, "identifiers", 2, actor=ADMIN.actor)  # only the extract needed it
    with hub.read() as session:
        assert session.scalars(select(ProjectExtract)).all() == []
    assert run_query(hub, ALICE, "cohort-a", sql).table.to_pylist() == before
    assert run_query(hub, ALICE, "cohort-a", "select * from saved.classes").table.to_pylist() == (
        before
    )
    with hub.read() as session:
        [rebuilt] = session.scalars(select(ProjectExtract)).all()
    assert rebuilt.parts[0]["kek_versions"] == {"clinical": 3, "identifiers": 3}
