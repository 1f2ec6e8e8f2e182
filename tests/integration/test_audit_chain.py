"""The audit chain on SQLite and PostgreSQL: appends in the caller's transaction,
and verification catches every kind of tampering at the first bad event."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from hdh import audit
from hdh.hub import Hub
from tests.helpers import add_events, sql, tamper


def verify(hub: Hub) -> audit.ChainReport:
    with hub.read() as session:
        return audit.verify_chain(session, hub.witness)


def test_a_new_hub_has_one_verified_event(hub: Hub) -> None:
    report = verify(hub)
    assert report.ok
    assert report.events == 1
    with hub.read() as session:
        (first,) = audit.list_events(session)
    assert (first.seq, first.action, first.actor) == (1, "hub.init", "test:init")
    assert first.prev_hash == audit.GENESIS_HASH
    assert hub.witness.read() == audit.Head(seq=1, hash=first.hash)


def test_events_chain_and_the_witness_follows_each_commit(hub: Hub) -> None:
    add_events(hub, 5)
    report = verify(hub)
    assert report.ok, report.problem
    assert report.events == 6
    with hub.read() as session:
        events = audit.list_events(session)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert json.loads(events[-1].details) == {"i": 4, "note": "données de santé"}
    assert hub.witness.read() == audit.Head(seq=6, hash=events[-1].hash)


def test_an_event_rolls_back_with_its_change(hub: Hub) -> None:
    def failing_change() -> None:
        with hub.transaction() as session:
            audit.record(
                session, actor="os:alice", action="test.fail", object_type="x", object_id="1"
            )
            raise RuntimeError("change failed")

    with pytest.raises(RuntimeError, match="change failed"):
        failing_change()
    add_events(hub, 1)
    report = verify(hub)
    assert report.ok, report.problem
    assert report.events == 2
    with hub.read() as session:
        assert [e.action for e in audit.list_events(session)] == ["hub.init", "test.touch"]


def test_edited_event_is_named(hub: Hub) -> None:
    add_events(hub, 5)
    tamper(hub, "edit")
    report = verify(hub)
    assert report.problem is not None
    assert report.problem.seq == 3
    assert report.problem.kind == "edited"
    assert report.problem.message == "event #3 was edited: its content no longer matches its hash"
    assert report.events == 2


def test_edited_event_with_recomputed_hash_breaks_the_next_link(hub: Hub) -> None:
    add_events(hub, 5)
    with hub.read() as session:
        third = audit.list_events(session, audit.EventFilter(object_id="ds-1"))[0]
    forged = audit.event_hash(
        seq=third.seq,
        occurred_at=third.occurred_at,
        actor="os:mallory",
        action=third.action,
        object_type=third.object_type,
        object_id=third.object_id,
        outcome=third.outcome,
        details=third.details,
        prev_hash=third.prev_hash,
    )
    sql(hub, "UPDATE audit_events SET actor = 'os:mallory', hash = :h WHERE seq = 3", h=forged)
    report = verify(hub)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (4, "out_of_order")


def test_deleted_event_is_named(hub: Hub) -> None:
    add_events(hub, 5)
    tamper(hub, "delete")
    report = verify(hub)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (4, "missing")
    assert report.problem.message == "event #4 is missing (removed from the log)"


def test_reordered_events_are_named(hub: Hub) -> None:
    add_events(hub, 5)
    tamper(hub, "reorder")
    report = verify(hub)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, "out_of_order")
    assert report.problem.message.startswith("event #3 does not follow event #2")


def test_truncated_tail_is_caught_by_the_witness(hub: Hub) -> None:
    add_events(hub, 5)
    tamper(hub, "truncate")
    report = verify(hub)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (5, "truncated")
    assert report.problem.message == (
        "the log ends at event #4 but the head witness records #6: events #5..#6 were removed "
        "from the end"
    )


def test_truncated_then_extended_chain_is_caught(hub: Hub) -> None:
    add_events(hub, 5)
    tamper(hub, "truncate")
    add_events(hub, 3, actor="os:mallory")  # new events 5..7 hide the gap
    report = verify(hub)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (6, "rewritten")


def test_missing_witness_is_reported_and_not_recreated(hub: Hub) -> None:
    add_events(hub, 2)
    hub.witness.path.unlink()
    # Later changes must not recreate the witness: that would hide a removed tail.
    add_events(hub, 2)
    assert not hub.witness.path.exists()
    report = verify(hub)
    assert report.problem is not None
    assert report.problem.kind == "truncated"
    assert report.problem.message == (
        f"the head witness {hub.witness.path} is missing, so a removed tail cannot be ruled out"
    )


def test_concurrent_writers_keep_one_chain(hub: Hub) -> None:
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()
    reports: list[audit.ChainReport] = []

    def verifier() -> None:
        # Verification while others append sees a consistent snapshot: never a false alarm.
        while writing.is_set():
            with hub.snapshot() as session:
                reports.append(audit.verify_chain(session, hub.witness))

    def writer(name: str) -> None:
        try:
            add_events(hub, 10, actor=name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"os:w{i}",)) for i in range(4)]
    checker = threading.Thread(target=verifier)
    checker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writing.clear()
    checker.join()
    assert errors == []
    assert reports
    assert [r.problem for r in reports if not r.ok] == []
    report = verify(hub)
    assert report.ok, report.problem
    assert report.events == 41
    assert report.head is not None
    assert hub.witness.read() == report.head


def test_list_events_filters_and_pages(hub: Hub) -> None:
    add_events(hub, 4, actor="os:alice")
    add_events(hub, 2, actor="os:bob")
    with hub.read() as session:
        bob = audit.list_events(session, audit.EventFilter(actor="os:bob"))
        tests = audit.list_events(session, audit.EventFilter(action="test.*"))
        page = audit.list_events(session, limit=2, before_seq=4)
        none = audit.list_events(session, audit.EventFilter(since="2999-01-01"))
    assert [e.seq for e in bob] == [6, 7]
    assert len(tests) == 6
    assert [e.seq for e in page] == [2, 3]
    assert none == []
