"""What the tamper-evident chain costs, as ratios against plain work measured in the same run.

* append: ``audit.record`` (chain-state update, hash, insert), one event per transaction,
  against inserting the same row into a table with the same columns and no chain;
* verify: ``audit.verify_chain`` over every event, against reading the same rows
  with no hashing.

Runs on SQLite, and on PostgreSQL when ``--postgres`` is given (started by
hdh.devservers, like the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.orm import Session

from hdh import audit
from hdh.hub import Hub, init_hub

ROUNDS = 3


def best_of(fn: Callable[[], None], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def run(hub: Hub, events: int) -> dict[str, float]:
    plain = Table(
        "bench_plain_events",
        MetaData(),
        Column("seq", Integer, primary_key=True),
        Column("occurred_at", String(32)),
        Column("actor", String(200)),
        Column("action", String(100)),
        Column("object_type", String(100)),
        Column("object_id", String(400)),
        Column("outcome", String(20)),
        Column("details", Text),
        Column("prev_hash", String(64)),
        Column("hash", String(64)),
    )
    plain.create(hub.engine)
    details = {"rows": 1234, "columns": ["age", "sex", "region"], "note": "données"}
    counter = iter(range(1, 10**9))

    def append(open_session: Callable[[], AbstractContextManager[Session]]) -> None:
        for i in range(events):
            with open_session() as session:
                audit.record(
                    session,
                    actor="os:bench",
                    action="dataset.read",
                    object_type="dataset",
                    object_id=f"ds-{i}",
                    details=details,
                )

    @contextlib.contextmanager
    def unwatched_session() -> Iterator[Session]:
        # A session the hub does not watch: the same appends without the witness write.
        with hub.engine.begin() as conn, Session(bind=conn) as session:
            yield session

    def append_chained() -> None:
        append(hub.transaction)

    def append_chained_no_witness() -> None:
        append(unwatched_session)

    def append_plain() -> None:
        for i in range(events):
            with hub.engine.begin() as conn:
                conn.execute(
                    insert(plain).values(
                        seq=next(counter),
                        occurred_at=audit.utc_timestamp(),
                        actor="os:bench",
                        action="dataset.read",
                        object_type="dataset",
                        object_id=f"ds-{i}",
                        outcome="success",
                        details=audit.chain.canonical_json(details),
                        prev_hash="0" * 64,
                        hash="0" * 64,
                    )
                )

    def verify() -> None:
        with hub.read() as session:
            assert audit.verify_chain(session, hub.witness).ok

    def read_plain() -> None:
        with hub.engine.connect() as conn:
            last = 0
            while True:
                rows = conn.execute(
                    select(plain).where(plain.c.seq > last).order_by(plain.c.seq).limit(1000)
                ).all()
                if not rows:
                    return
                last = rows[-1].seq

    t_plain = best_of(append_plain)
    t_chain = best_of(append_chained)
    t_chain_bare = best_of(append_chained_no_witness)
    t_read = best_of(read_plain)
    t_verify = best_of(verify)
    total = ROUNDS * events
    return {
        "append_ratio": t_chain / t_plain,
        "append_bare_ratio": t_chain_bare / t_plain,
        "append_per_s": events / t_chain,
        "verify_ratio": t_verify / t_read,
        "verify_per_s": (total + 1) / t_verify,
    }


def report(name: str, events: int, r: dict[str, float]) -> None:
    print(
        f"{name:10s} append {events} events, one per transaction: chained/plain = "
        f"{r['append_ratio']:.2f}x ({r['append_per_s']:.0f} events/s chained); "
        f"without the witness file: {r['append_bare_ratio']:.2f}x"
    )
    print(
        f"{name:10s} verify the whole chain: verify/plain read = {r['verify_ratio']:.2f}x "
        f"({r['verify_per_s']:.0f} events/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with init_hub(Path(tmp) / "sqlite-hub") as hub:
            report("SQLite", args.events, run(hub, args.events))
        if args.postgres:
            from hdh.devservers import PostgresServer

            with PostgresServer() as pg:
                url = pg.create_database("bench")
                with init_hub(Path(tmp) / "pg-hub", database_url=url) as hub:
                    report("PostgreSQL", args.events, run(hub, args.events))


if __name__ == "__main__":
    main()
