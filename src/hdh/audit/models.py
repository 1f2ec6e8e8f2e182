"""Tables of the audit trail."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
SEQ = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One event. ``hash`` covers every other column and ``prev_hash`` is the
    previous event's ``hash``, so editing, removing or moving a row breaks the chain."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=False)
    occurred_at: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str] = mapped_column(String(400))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainState(Base):
    """One row: the number and hash of the latest event. Appending an event updates
    it first, which serialises writers (a row lock on PostgreSQL, the write lock on SQLite)."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(SEQ)
    head_hash: Mapped[str] = mapped_column(String(64))
    #: The number of the latest event whose outcome is a success: refused and failed
    #: actions change nothing, so they leave it (and what servers keep by it) as it is.
    changed_seq: Mapped[int] = mapped_column(SEQ, server_default="0")
