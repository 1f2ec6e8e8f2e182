"""The tamper-evident audit trail.

Every change the hub makes appends an event (who, what action, which object, when,
outcome, details) in the same database transaction as the change, so an event exists
exactly when its change does. Each event's SHA-256 covers its content and the previous
event's hash; a witness file outside the database remembers the latest head. See
docs/explanation/audit-log.md for what this proves and what it does not.
"""

from hdh.audit.chain import (
    GENESIS_HASH,
    ChainReport,
    EventFilter,
    Problem,
    count_events,
    event_hash,
    event_record,
    last_change,
    list_events,
    parse_timestamp,
    record,
    utc_timestamp,
    verify_chain,
)
from hdh.audit.models import AuditChainState, AuditEvent
from hdh.audit.witness import FileWitness, Head

__all__ = [
    "GENESIS_HASH",
    "AuditChainState",
    "AuditEvent",
    "ChainReport",
    "EventFilter",
    "FileWitness",
    "Head",
    "Problem",
    "count_events",
    "event_hash",
    "event_record",
    "last_change",
    "list_events",
    "parse_timestamp",
    "record",
    "utc_timestamp",
    "verify_chain",
]
