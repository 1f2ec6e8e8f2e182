"""Alembic environment: runs on the engine or connection the hub hands over, never on
a URL of its own. Given a connection, it migrates inside that connection's transaction,
so ``hdh init`` can create the schema and the hub's first rows in one commit."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

import hdh.models  # noqa: F401  (registers every table on Base.metadata)
from hdh.db.engine import Base

bind = context.config.attributes["bind"]


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if isinstance(bind, Engine):
    with bind.begin() as conn:
        run(conn)
else:
    assert isinstance(bind, Connection)
    run(bind)
