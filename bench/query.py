"""Governed project queries as a ratio to plain DuckDB over the same data in plaintext
Parquet, measured in the same run.

A generated claims table (default 10 million rows: a patient pseudonym for 1 million
people, a date, a drug code, a quantity, an amount) and a people table (1 million rows)
are ingested into a hub (patient ids pseudonymised, parts encrypted), a project is given
permits on both, and a set of group-by and join queries runs:

- through ``hdh.workspace.governed.run_query``, the path of ``hdh query``: permit checks,
  the project's extract scanned through ``pyarrow.dataset`` with decryption, a locked
  DuckDB, limits and auditing;
- through plain DuckDB over the same rows (the project's extract, decrypted once and
  written as plaintext Parquet with the same row groups).

Each query's answer is checked to be the same on both sides. "warm" is the steady state
of a long-running hub (extract parts already verified against their SHA-256 in this
process); "cold" fetches and verifies every part of the extracts the query reads. The
one-off cost of building the project's extracts (first query after a permit or a new
version) is printed apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import init_hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest
from hdh.workspace import extracts
from hdh.workspace.governed import run_query

QUERIES = {
    "claims by drug": (
        "SELECT drug_code, count(*) AS n, round(sum(amount), 2) AS total "
        "FROM claims GROUP BY 1 ORDER BY 1"
    ),
    "people per year": (
        "SELECT year(delivery_date) AS y, count(DISTINCT patient_id) AS people "
        "FROM claims GROUP BY 1 ORDER BY 1"
    ),
    "spend by sex (join)": (
        "SELECT p.sex, count(*) AS n, round(avg(c.amount), 6) AS mean "
        "FROM claims c JOIN people p USING (patient_id) GROUP BY 1 ORDER BY 1"
    ),
    "top spenders": (
        "SELECT patient_id, round(sum(amount), 2) AS total FROM claims "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
    ),
    "quantity by birth decade, 2021 (join, filter)": (
        "SELECT p.birth_year // 10 * 10 AS decade, sum(c.quantity) AS q "
        "FROM claims c JOIN people p USING (patient_id) "
        "WHERE c.delivery_date BETWEEN DATE '2021-01-01' AND DATE '2021-12-31' "
        "GROUP BY 1 ORDER BY 1"
    ),
}


def generate(root: Path, rows: int, people: int) -> None:
    duckdb.sql(
        f"""
        COPY (
            SELECT 'P' || lpad((i * 7919 % {people})::VARCHAR, 8, '0') AS patient_id,
                   DATE '2020-01-01' + (i % 1461)::INTEGER AS delivery_date,
                   'ATC' || (i % 997)::VARCHAR AS drug_code,
                   (i % 5) + 1 AS quantity,
                   round((i % 10000) / 100.0, 2) AS amount
            FROM range({rows}) t(i)
        ) TO '{root / "claims.parquet"}' (FORMAT parquet)
        """
    )
    duckdb.sql(
        f"""
        COPY (
            SELECT 'P' || lpad(i::VARCHAR, 8, '0') AS patient_id,
                   1930 + i % 80 AS birth_year,
                   CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END AS sex
            FROM range({people}) t(i)
        ) TO '{root / "people.parquet"}' (FORMAT parquet)
        """
    )


def best(run, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each side")
    args = parser.parse_args()
    admin = operator("os:operator")
    lead = Principal("lead", frozenset({"researcher"}))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.rows, args.people)
        with init_hub(root / "hub") as hub:
            for name in ("claims", "people"):
                ingest(
                    hub, root / f"{name}.parquet", name=name, actor="bench",
                    rules=["patient_id=pseudonymise"],
                )  # fmt: skip
            add_user(hub, "lead", roles=["researcher"], actor=admin.actor)
            create_project(hub, lead, "bench", title="Query benchmark")
            transition(hub, lead, "bench", "submit")
            transition(hub, admin, "bench", "approve", approval_ref="bench")
            transition(hub, admin, "bench", "activate")
            columns = {
                "claims": ["patient_id", "delivery_date", "drug_code", "quantity", "amount"],
                "people": ["patient_id", "birth_year", "sex"],
            }
            for name in ("claims", "people"):
                permit = request_permit(hub, lead, "bench", name, columns=columns[name])
                decide(hub, admin, permit.id, "grant")

            built = 0.0
            plain = duckdb.connect()
            for name in ("claims", "people"):
                extract = extracts.extract_for(hub, lead, "bench", name)
                built += extract.built_s
                path = root / f"plain-{name}.parquet"
                pq.write_table(extract.scan.to_table(), path, row_group_size=extracts.ROW_GROUP)
                plain.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")

            print(
                f"{args.rows:,} claims, {args.people:,} people; best of {args.rounds} each; "
                f"building the project's extracts once: {built:.1f} s"
            )
            print(f"{'query':48} {'plain':>8} {'warm':>8} {'ratio':>6} {'cold':>8} {'ratio':>6}")
            totals = [0.0, 0.0, 0.0]
            for label, sql in QUERIES.items():
                expected = plain.sql(sql).fetchall()
                got = run_query(hub, lead, "bench", sql).table.to_pylist()
                assert [tuple(r.values()) for r in got] == expected, label

                def cold(sql: str = sql) -> None:
                    extracts.VERIFIED.clear()
                    run_query(hub, lead, "bench", sql)

                p = best(lambda sql=sql: plain.sql(sql).fetchall(), args.rounds)
                w = best(lambda sql=sql: run_query(hub, lead, "bench", sql), args.rounds)
                c = best(cold, args.rounds)
                for i, value in enumerate((p, w, c)):
                    totals[i] += value
                print(f"{label:48} {p:8.3f} {w:8.3f} {w / p:6.2f} {c:8.3f} {c / p:6.2f}")
            p, w, c = totals
            print(f"{'all queries':48} {p:8.3f} {w:8.3f} {w / p:6.2f} {c:8.3f} {c / p:6.2f}")


if __name__ == "__main__":
    main()
