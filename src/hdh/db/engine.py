"""Engines, sessions and migrations for the metadata database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from hdh.config import mask_url
from hdh.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest migration in ``migrations/versions``. Opening a hub compares the database
#: with it, without loading Alembic; a test checks that it names Alembic's head.
SCHEMA_HEAD = "0017"

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()


#: Connections kept open, and opened beyond them at busy times. The server answers from
#: a pool of 40 threads: with fewer kept, a busy server kept closing and reopening them.
#: A SQLite connection is a file handle; a PostgreSQL one a server process: fewer kept.
POOL_SIZE, MAX_OVERFLOW = 20, 30
PG_POOL_SIZE = 10


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (a SQLAlchemy URL, as :meth:`Settings.sqlalchemy_url` gives)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=PG_POOL_SIZE, max_overflow=MAX_OVERFLOW,
        connect_args={"connect_timeout": 5},
    )  # fmt: skip


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def snapshot_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a read transaction that sees one snapshot of the database:
    REPEATABLE READ, read only, on PostgreSQL; an explicit BEGIN on SQLite (in WAL mode a
    read transaction keeps the snapshot of its first read)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def check_connection(engine: Engine, *, shown_as: str | None = None) -> None:
    """Raise :class:`DatabaseUnavailable` unless the database answers a query.

    ``shown_as`` is the URL as the user wrote it, for the message (password masked).
    """
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot reach the database at "
            f"{mask_url(shown_as or engine.url.render_as_string())}: {reason}",
            hint="check that the server is running and that database_url in hub.toml "
            "(or HDH_DATABASE_URL) is right",
        ) from exc


def _alembic_config(bind: Engine | Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["bind"] = bind
    return config


def upgrade(bind: Engine | Connection, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; a no-op when it is already there.

    Given a connection, the migration runs inside its open transaction.
    """
    from alembic import command

    command.upgrade(_alembic_config(bind), revision)


def downgrade_to_empty(bind: Engine | Connection) -> None:
    """Remove every table the migrations created, and Alembic's own version table."""
    from alembic import command

    command.downgrade(_alembic_config(bind), "base")
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    else:
        bind.execute(text("DROP TABLE IF EXISTS alembic_version"))


def current_revision(bind: Engine | Connection) -> str | None:
    """The migration the database is at, or None when it has no hub schema."""

    def read(conn: Connection) -> str | None:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    if isinstance(bind, Connection):
        return read(bind)
    with bind.connect() as conn:
        return read(conn)


def head_revision() -> str:
    """The newest migration, as Alembic reads it from the scripts (slow: loads Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head
