"""The Alembic migrations build exactly the tables the models declare, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import hdh.models  # noqa: F401
from hdh import db
from hdh.hub import Hub


def test_migrations_match_the_models(hub: Hub) -> None:
    with hub.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(hub: Hub) -> None:
    db.upgrade(hub.engine)
    db.upgrade(hub.engine)
    assert db.current_revision(hub.engine) == db.head_revision()


def test_schema_head_names_the_newest_migration() -> None:
    assert db.head_revision() == db.SCHEMA_HEAD
