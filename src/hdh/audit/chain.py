"""Appending events to the hash chain, reading them back, and verifying the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, cast

from sqlalchemy import Select, Table, func, insert, select, update
from sqlalchemy.orm import Session

from hdh.audit.models import AuditChainState, AuditEvent
from hdh.audit.witness import FileWitness, Head

GENESIS_HASH = "0" * 64
OUTCOMES = ("success", "failure", "denied")

#: Key in ``Session.info`` where :func:`record` leaves the :class:`Pending` events of the
#: transaction, for the hub to advance the head witness once they are committed.
PENDING = "hdh.audit.pending"

Outcome = Literal["success", "failure", "denied"]


def utc_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: sorts as text, hashes the same everywhere."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str | None, what: str) -> str | None:
    """A date (``2026-11-29``) or a time (``2026-11-29T14:30:00Z``; without a zone, UTC)
    as events store it; InvalidInput naming ``what`` otherwise."""
    from hdh.errors import InvalidInput

    if value is None:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # times without a zone are UTC, as shown
        return utc_timestamp(moment)
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not a date or time",
            hint="write it as 2026-11-29 or 2026-11-29T14:30:00Z",
        ) from None


def canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(
    *,
    seq: int,
    occurred_at: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    outcome: str,
    details: str,
    prev_hash: str,
) -> str:
    """SHA-256 over every field of the event, in a fixed order, as canonical JSON."""
    material = json.dumps(
        [seq, occurred_at, actor, action, object_type, object_id, outcome, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _hash_of(event: AuditEvent) -> str:
    return event_hash(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor=event.actor,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        outcome=event.outcome,
        details=event.details,
        prev_hash=event.prev_hash,
    )


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    outcome: Outcome = "success",
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Append an event in ``session``'s transaction: it commits or rolls back with the change.

    The chain state row is updated first, so concurrent writers queue on it and each
    event links to the one committed just before.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    # Core statements on the session's connection: no unit-of-work flush per event.
    conn = session.connection()
    state = cast(Table, AuditChainState.__table__)
    events = cast(Table, AuditEvent.__table__)
    seq, prev_hash = conn.execute(
        update(state)
        .where(state.c.id == 1)
        .values(seq=state.c.seq + 1)
        .returning(state.c.seq, state.c.head_hash)
    ).one()
    event = AuditEvent(
        seq=seq,
        occurred_at=utc_timestamp(now),
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        outcome=outcome,
        details=canonical_json(details or {}),
        prev_hash=prev_hash,
    )
    event.hash = _hash_of(event)
    conn.execute(
        insert(events).values({column.name: getattr(event, column.name) for column in events.c})
    )
    moved = {"changed_seq": seq} if outcome == "success" else {}
    conn.execute(update(state).where(state.c.id == 1).values(head_hash=event.hash, **moved))
    head = Head(seq=event.seq, hash=event.hash)
    pending = session.info.get(PENDING)
    if pending is None:
        session.info[PENDING] = Pending(first_seq=event.seq, links_to=prev_hash, head=head)
    else:
        session.info[PENDING] = Pending(pending.first_seq, pending.links_to, head)
    return event


@dataclass(frozen=True)
class Pending:
    """The events a transaction appended: the first one's number and the hash it links to,
    and the last one (the new head)."""

    first_seq: int
    links_to: str
    head: Head

    def continues(self, earlier: Head) -> bool:
        """Whether these events link directly onto ``earlier`` (no database lookup needed)."""
        return earlier.seq == self.first_seq - 1 and earlier.hash == self.links_to


@dataclass(frozen=True)
class Problem:
    """The first place where the chain does not hold."""

    seq: int
    kind: Literal["missing", "out_of_order", "edited", "truncated", "rewritten", "state", "witness"]
    message: str


@dataclass(frozen=True)
class ChainReport:
    events: int
    head: Head | None
    witness: Head | None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _iter_events(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    """Every event in order, ``batch`` rows at a time (memory stays flat on long chains)."""
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session, witness: FileWitness) -> ChainReport:
    """Recompute the chain from the first event and compare its end with the witness.

    ``session`` should read one snapshot (:meth:`Hub.snapshot`) that starts after this
    function reads the witness, so that events committed meanwhile are either all
    visible or all invisible.

    Detects an edited event (its hash no longer matches its content), a removed event
    (a gap in the numbers), events moved or replaced (a ``prev_hash`` that does not
    match the event before), and a removed tail (the chain stops before the witness).
    """
    witness_head = witness.read()
    expected = 1
    prev = GENESIS_HASH
    count = 0
    last: Head | None = None
    hash_at_witness: str | None = None

    def report(problem: Problem | None) -> ChainReport:
        return ChainReport(events=count, head=last, witness=witness_head, problem=problem)

    for event in _iter_events(session):
        if event.seq != expected:
            if event.seq > expected:
                gone = (
                    f"event #{expected} is missing"
                    if event.seq == expected + 1
                    else f"events #{expected}..#{event.seq - 1} are missing"
                )
                return report(Problem(expected, "missing", f"{gone} (removed from the log)"))
            return report(Problem(event.seq, "out_of_order", f"event #{event.seq} is duplicated"))
        if event.prev_hash != prev:
            before = f"event #{expected - 1}" if expected > 1 else "the start of the chain"
            return report(
                Problem(
                    event.seq,
                    "out_of_order",
                    f"event #{event.seq} does not follow {before} (its previous-hash link is "
                    "broken: events were reordered, replaced or inserted)",
                )
            )
        if _hash_of(event) != event.hash:
            return report(
                Problem(
                    event.seq,
                    "edited",
                    f"event #{event.seq} was edited: its content no longer matches its hash",
                )
            )
        if witness_head is not None and event.seq == witness_head.seq:
            hash_at_witness = event.hash
        prev = event.hash
        count += 1
        last = Head(seq=event.seq, hash=event.hash)
        expected += 1

    last_seq = last.seq if last else 0
    if witness_head is None:
        if last is not None:
            return report(
                Problem(
                    last_seq,
                    "truncated",
                    f"the head witness {witness.path} is missing, so a removed tail cannot be "
                    "ruled out",
                )
            )
    elif last_seq < witness_head.seq:
        gone = (
            f"event #{witness_head.seq} was"
            if witness_head.seq == last_seq + 1
            else f"events #{last_seq + 1}..#{witness_head.seq} were"
        )
        return report(
            Problem(
                last_seq + 1,
                "truncated",
                f"the log ends at event #{last_seq} but the head witness records "
                f"#{witness_head.seq}: {gone} removed from the end",
            )
        )
    elif hash_at_witness != witness_head.hash:
        return report(
            Problem(
                witness_head.seq,
                "rewritten",
                f"event #{witness_head.seq} differs from the one the head witness records: "
                "the log was rewritten from there",
            )
        )

    state = session.get(AuditChainState, 1)
    if (
        state is None
        or state.seq != last_seq
        or state.head_hash != (last.hash if last else GENESIS_HASH)
    ):
        return report(
            Problem(
                last_seq,
                "state",
                f"the chain state row does not match event #{last_seq}, the last in the log",
            )
        )
    return report(None)


@dataclass(frozen=True)
class EventFilter:
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        actor: str | None = None,
        action: str | None = None,
        object_: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        until: str | None = None,
        prefix: str = "",
    ) -> EventFilter:
        """A filter from what a person typed (``object_`` as TYPE or TYPE:ID; dates or
        times); InvalidInput naming the option (``prefix`` + its name) otherwise."""
        from hdh.errors import InvalidInput

        if outcome and outcome not in OUTCOMES:
            raise InvalidInput(
                f"{prefix}outcome {outcome!r} is not an outcome",
                hint="use success, failure or denied",
            )
        object_type, _, object_id = (object_ or "").partition(":")
        return cls(
            actor=actor or None, action=action or None, object_type=object_type or None,
            object_id=object_id or None, outcome=outcome or None,
            since=parse_timestamp(since or None, f"{prefix}since"),
            until=parse_timestamp(until or None, f"{prefix}until"),
        )  # fmt: skip

    def apply(self, query: Select[AuditEvent]) -> Select[AuditEvent]:
        if self.actor:
            query = query.where(AuditEvent.actor == self.actor)
        if self.action:
            if self.action.endswith("*"):
                query = query.where(AuditEvent.action.startswith(self.action[:-1], autoescape=True))
            else:
                query = query.where(AuditEvent.action == self.action)
        if self.object_type:
            query = query.where(AuditEvent.object_type == self.object_type)
        if self.object_id:
            query = query.where(AuditEvent.object_id == self.object_id)
        if self.outcome:
            query = query.where(AuditEvent.outcome == self.outcome)
        if self.since:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until:
            query = query.where(AuditEvent.occurred_at < self.until)
        return query


def list_events(
    session: Session,
    filters: EventFilter | None = None,
    *,
    limit: int = 50,
    before_seq: int | None = None,
) -> list[AuditEvent]:
    """The latest ``limit`` events matching ``filters`` (older than ``before_seq`` if given),
    oldest first, so a page reads like the tail of a log."""
    query = (filters or EventFilter()).apply(select(AuditEvent))
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    rows = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit)))
    rows.reverse()
    return rows


def event_record(event: AuditEvent) -> dict[str, Any]:
    """An event as the CLI's ``--json``, the API and the pages show it."""
    return {
        "seq": event.seq, "occurred_at": event.occurred_at, "actor": event.actor,
        "action": event.action, "object_type": event.object_type,
        "object_id": event.object_id, "outcome": event.outcome,
        "details": json.loads(event.details), "hash": event.hash,
    }  # fmt: skip


def last_change(session: Session) -> int:
    """The number of the latest successful event (0 before the first): it moves with
    every change the hub makes, since each is recorded in the same transaction, and not
    with refusals (``auth.failed``, ``authz.denied``) or failures, which change nothing:
    a client sending bad tokens does not empty what servers keep until the next change."""
    return session.scalar(select(AuditChainState.changed_seq).where(AuditChainState.id == 1)) or 0


def count_events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0
