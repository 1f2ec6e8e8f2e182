"""Tables of migrations: a plan between two locations and the state of each object."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class Migration(Base):
    """A planned move of every object the hub holds on ``source`` to ``target``."""

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    #: planned, running, copied (every object verified on the target), incomplete,
    #: partly cut over, cut over (every wave), decommissioned (the source copies
    #: deleted), cancelled
    status: Mapped[str] = mapped_column(String(20))
    #: [{"wave", "what", "objects", "bytes", "state", "cut_over_at"}]; a wave's state
    #: is "planned" or "cut over".
    waves: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    objects: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(32))
    #: When the last wave was cut over (the decommission grace period counts from it).
    cut_over_at: Mapped[str | None] = mapped_column(String(32), default=None)
    decommissioned_at: Mapped[str | None] = mapped_column(String(32), default=None)
    #: The copies get new keys (decrypted and encrypted again on the way), so that
    #: destroying the source's keys after decommission leaves any copy left behind
    #: unreadable; otherwise the ciphertext moves as it is.
    rekey: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class MigrationObject(Base):
    """One object to move: what the hub recorded of it, and where its copy stands."""

    __tablename__ = "migration_objects"
    __table_args__ = (UniqueConstraint("migration_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[int] = mapped_column(ForeignKey("migrations.id"), index=True)
    wave: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: pending, copied (read, hashed, written, read back and hashed), corrupt (the
    #: source does not match its record: never copied), failed (the target refused)
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    copied_at: Mapped[str | None] = mapped_column(String(32), default=None)
    #: The worker copying it now ("host:pid:start"), and since when (seconds since the
    #: epoch); a claim lapses when that process is gone or after the lease.
    claimed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    claimed_at: Mapped[float | None] = mapped_column(Float, default=None)
    #: The run that last tried it (a run tries each object once).
    last_run: Mapped[str | None] = mapped_column(String(40), default=None)
    copied_by: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The target's upload of a large object begun and not completed (S3 multipart):
    #: the next try sends only the parts it lacks.
    upload_id: Mapped[str | None] = mapped_column(String(400), default=None)
    #: Bytes its last try found on the target, sent by an earlier try: not sent again.
    reused_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: Re-keying migrations only: the copy's stored size and SHA-256 (its bytes differ
    #: from the source's), its data key (envelope objects) and the KEK versions that
    #: wrap its keys (Parquet files: {class: version}); and the source's data key, or
    #: the KEK versions wrapping the source's keys. ``size`` and ``sha256`` stay the
    #: source's.
    copy_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    copy_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    copy_key_id: Mapped[str | None] = mapped_column(String(36), default=None)
    source_key_id: Mapped[str | None] = mapped_column(String(36), default=None)
    copy_keks: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)
    source_keks: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)
