"""Real cohort queries on OMOP GiBleed give the same answers through a project's governed
connection (pseudonymised person ids, encrypted extracts) as plain DuckDB over the
unencrypted source files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub, init_hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest, versions
from hdh.workspace.governed import run_query
from tests.conftest import SHARED_DATA

GIBLEED = SHARED_DATA / "omop_eunomia_gibleed" / "csv"
TABLES = ("person", "condition_occurrence", "drug_exposure", "observation_period", "concept")
ADMIN = operator("os:operator")
LEAD = Principal("lead", frozenset({"researcher"}))

# Dates are cast on both sides: the source CSVs are typed by DuckDB's sniffer, the hub's
# versions by its own reader.
QUERIES = {
    "persons and records by condition": """
        SELECT c.concept_name, count(DISTINCT co.person_id) AS persons, count(*) AS records
        FROM condition_occurrence co JOIN concept c ON c.concept_id = co.condition_concept_id
        GROUP BY 1 ORDER BY records DESC, 1 LIMIT 25
    """,
    "drug exposures per person": """
        SELECT exposures, count(*) AS persons FROM (
            SELECT person_id, count(*) AS exposures FROM drug_exposure GROUP BY 1
        ) GROUP BY 1 ORDER BY 1
    """,
    "exposures by drug and sex": """
        SELECT c.concept_name AS drug, p.gender_concept_id AS sex,
               count(DISTINCT d.person_id) AS persons, count(*) AS exposures
        FROM drug_exposure d
        JOIN person p ON p.person_id = d.person_id
        JOIN concept c ON c.concept_id = d.drug_concept_id
        GROUP BY 1, 2 ORDER BY exposures DESC, 1, 2 LIMIT 20
    """,
    "observation periods": """
        SELECT count(*) AS periods, count(DISTINCT person_id) AS persons,
               min(CAST(observation_period_end_date AS DATE)
                   - CAST(observation_period_start_date AS DATE)) AS shortest,
               max(CAST(observation_period_end_date AS DATE)
                   - CAST(observation_period_start_date AS DATE)) AS longest,
               round(avg(CAST(observation_period_end_date AS DATE)
                   - CAST(observation_period_start_date AS DATE)), 3) AS mean_days
        FROM observation_period
    """,
    "GI bleeding cohort with a year of prior observation, by birth decade": """
        WITH first_bleed AS (
            SELECT person_id, min(CAST(condition_start_date AS DATE)) AS index_date
            FROM condition_occurrence WHERE condition_concept_id = 192671 GROUP BY 1
        )
        SELECT p.year_of_birth // 10 * 10 AS decade, count(*) AS persons
        FROM first_bleed f
        JOIN observation_period o ON o.person_id = f.person_id
        JOIN person p ON p.person_id = f.person_id
        WHERE CAST(o.observation_period_start_date AS DATE) <= f.index_date - INTERVAL 365 DAY
          AND CAST(o.observation_period_end_date AS DATE) >= f.index_date
        GROUP BY 1 ORDER BY 1
    """,
}


@pytest.fixture(scope="module")
def omop_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("omop")
    with init_hub(root / "hub", actor="test:init") as hub:
        add_user(hub, "lead", roles=["researcher"], actor=ADMIN.actor)
        create_project(hub, LEAD, "gibleed", title="GI bleeding after NSAIDs")
        transition(hub, LEAD, "gibleed", "submit")
        transition(hub, ADMIN, "gibleed", "approve", approval_ref="test")
        transition(hub, ADMIN, "gibleed", "activate")
        for table in TABLES:
            rules = ["person_id=pseudonymise"] if table != "concept" else []
            if table == "person":
                rules.append("person_source_value=drop")
            ingest(hub, GIBLEED / f"{table}.csv.gz", name=table, actor="os:steward", rules=rules)
            columns = [c["name"] for c in versions(hub, table)[-1].manifest["schema"]]
            permit = request_permit(hub, LEAD, "gibleed", table, columns=columns)
            decide(hub, ADMIN, permit.id, "grant")
        yield hub


@pytest.fixture(scope="module")
def plain() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for table in TABLES:
        path = GIBLEED / f"{table}.csv.gz"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_csv('{path}')")
    yield con
    con.close()


@pytest.mark.parametrize("label", QUERIES)
def test_governed_answers_equal_plain_duckdb(
    omop_hub: Hub, plain: duckdb.DuckDBPyConnection, label: str
) -> None:
    sql = QUERIES[label]
    expected = plain.sql(sql).fetchall()
    assert expected, "the query must find something in GiBleed"
    got = run_query(omop_hub, LEAD, "gibleed", sql).table
    assert [tuple(row.values()) for row in got.to_pylist()] == expected


def test_person_ids_are_the_projects_pseudonyms(omop_hub: Hub, tmp_path: Path) -> None:
    ids = run_query(omop_hub, LEAD, "gibleed", "select person_id from person limit 5").table
    values = ids.column("person_id").to_pylist()
    assert all(isinstance(v, str) and len(v) == 32 for v in values)
    source = duckdb.sql(f"select person_id::VARCHAR from read_csv('{GIBLEED / 'person.csv.gz'}')")
    assert not set(values) & {r[0] for r in source.fetchall()}
