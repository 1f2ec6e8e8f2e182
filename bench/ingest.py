"""Ingestion throughput as a ratio to DuckDB's own ``COPY … TO parquet`` of the same CSV,
measured in the same run.

The generated CSV looks like a claims extract: a patient id (500,000 distinct) and a
prescriber id (20,000 distinct), both pseudonymised by hdh, plus a date, a drug code,
a quantity and an amount. hdh's figure includes reading, pseudonymising, Parquet
Modular Encryption, storing the parts on the hub's local location and publishing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from hdh.hub import init_hub
from hdh.ingest.service import ingest


def generate(path: Path, rows: int) -> None:
    duckdb.sql(
        f"""
        COPY (
            SELECT
                'P' || lpad((i % 500000)::VARCHAR, 7, '0') AS patient_id,
                'D' || lpad((i * 7 % 20000)::VARCHAR, 5, '0') AS prescriber_id,
                DATE '2020-01-01' + (i % 1461)::INTEGER AS delivery_date,
                'ATC' || (i % 997)::VARCHAR AS drug_code,
                (i % 5) + 1 AS quantity,
                round((i % 10000) / 100.0, 2) AS amount
            FROM range({rows}) t(i)
        ) TO '{path}' (HEADER, DELIMITER ';')
        """
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "claims.csv"
        generate(source, args.rows)
        size = source.stat().st_size

        duck_times = []
        for round_ in range(args.rounds):
            began = time.perf_counter()
            duckdb.sql(
                f"COPY (SELECT * FROM read_csv('{source}', delim=';', header=true)) "
                f"TO '{root / f'duck{round_}.parquet'}' (FORMAT parquet)"
            )
            duck_times.append(time.perf_counter() - began)
        duck = min(duck_times)

        hdh_times = []
        with init_hub(root / "hub") as hub:
            for round_ in range(args.rounds):
                began = time.perf_counter()
                result = ingest(
                    hub,
                    source,
                    name=f"claims-{round_}",
                    actor="bench",
                    rules=["patient_id=pseudonymise", "prescriber_id=pseudonymise"],
                )
                hdh_times.append(time.perf_counter() - began)
        hdh = min(hdh_times)
        assert result.rows == args.rows
        print(f"{args.rows} rows, {size / 2**20:.0f} MiB of CSV, best of {args.rounds} each")
        print(f"DuckDB COPY TO parquet: {args.rows / duck:,.0f} rows/s")
        print(
            f"hdh ingest (2 pseudonymised columns, encrypted, published): "
            f"{args.rows / hdh:,.0f} rows/s = {duck / hdh:.2f}x DuckDB"
        )


if __name__ == "__main__":
    main()
