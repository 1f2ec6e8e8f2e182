"""Ingestion throughput as a ratio to DuckDB's own ``COPY … TO parquet`` of the same CSV,
measured in the same run.

The generated CSV looks like a claims extract: a patient id (500,000 distinct) and a
prescriber id (20,000 distinct), both pseudonymised by hdh, plus a date, a drug code,
a quantity and an amount. hdh's figure includes reading, pseudonymising, Parquet
Modular Encryption, storing the parts on the hub's local location and publishing.
"""

from __future__ import annotations

import argparse
import statistics
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
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing both sides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "claims.csv"
        generate(source, args.rows)
        size = source.stat().st_size
        duck_times: list[float] = []
        hdh_times: list[float] = []
        with init_hub(root / "hub") as hub:

            def by_duckdb() -> float:
                target = root / "duck.parquet"
                began = time.perf_counter()
                duckdb.sql(
                    f"COPY (SELECT * FROM read_csv('{source}', delim=';', header=true)) "
                    f"TO '{target}' (FORMAT parquet)"
                )
                seconds = time.perf_counter() - began
                target.unlink()
                return seconds

            def by_hdh(round_: int) -> float:
                began = time.perf_counter()
                result = ingest(
                    hub,
                    source,
                    name=f"claims-{round_ + 1}",
                    actor="bench",
                    rules=["patient_id=pseudonymise", "prescriber_id=pseudonymise"],
                )
                seconds = time.perf_counter() - began
                assert result.rows == args.rows
                return seconds

            # Rounds time both sides, one after the other, the first alternating: this
            # machine's speed drifts, and each round's ratio compares runs made seconds
            # apart. Round 0 warms both up (imports, first allocations); it is not counted.
            for round_ in range(-1, args.rounds):
                if round_ % 2:
                    hdh_time, duck_time = by_hdh(round_), by_duckdb()
                else:
                    duck_time, hdh_time = by_duckdb(), by_hdh(round_)
                if round_ < 0:
                    continue
                duck_times.append(duck_time)
                hdh_times.append(hdh_time)
                print(
                    f"round {round_ + 1}: DuckDB {duck_time:.2f} s, hdh {hdh_time:.2f} s"
                    f" = {duck_time / hdh_time:.2f}x",
                    flush=True,
                )
        ratios = [d / h for d, h in zip(duck_times, hdh_times, strict=True)]
        print(f"{args.rows} rows, {size / 2**20:.0f} MiB of CSV, {args.rounds} rounds")
        print(f"DuckDB COPY TO parquet: {args.rows / statistics.median(duck_times):,.0f} rows/s")
        print(
            f"hdh ingest (2 pseudonymised columns, encrypted, published): "
            f"{args.rows / statistics.median(hdh_times):,.0f} rows/s = "
            f"{statistics.median(ratios):.2f}x DuckDB (median of the rounds' ratios; "
            f"best times: {min(duck_times) / min(hdh_times):.2f}x)"
        )


if __name__ == "__main__":
    main()
