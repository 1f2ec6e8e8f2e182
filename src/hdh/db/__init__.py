"""The metadata database: SQLite in the hub folder by default, PostgreSQL by URL.

Tables are declared by the domain package that owns them (``hdh.audit.models``,
``hdh.storage.models``…) on the one :class:`Base`; the schema is created and
upgraded only by the Alembic migrations in ``hdh/db/migrations`` (never by
``create_all``), so a hub made by one release opens with the next.
"""

from __future__ import annotations

from hdh.db.engine import (
    SCHEMA_HEAD,
    Base,
    check_connection,
    current_revision,
    downgrade_to_empty,
    head_revision,
    make_engine,
    make_sessionmaker,
    snapshot_connection,
    upgrade,
)

__all__ = [
    "SCHEMA_HEAD",
    "Base",
    "check_connection",
    "current_revision",
    "downgrade_to_empty",
    "head_revision",
    "make_engine",
    "make_sessionmaker",
    "snapshot_connection",
    "upgrade",
]
