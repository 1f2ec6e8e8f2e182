"""A hub: its folder, settings, database and witness, opened once and passed down.

:func:`init_hub` makes a new hub; :meth:`Hub.open` opens an existing one;
:func:`hub_status` says what it holds.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from hdh import audit, db
from hdh.audit.chain import PENDING, Pending
from hdh.config import (
    CONFIG_FILE,
    Settings,
    load_settings,
    mask_url,
    render_hub_toml,
    settings_from_mapping,
)
from hdh.crypto import KeyFileInfo, create_key_file, inspect_key_file
from hdh.crypto.keys import LocalKeyProvider
from hdh.errors import ConfigError, Conflict, FolderNotEmpty, HubError, InvalidInput
from hdh.hubinfo import HubInfo
from hdh.storage import Location

log = logging.getLogger("hdh.hub")

DEFAULT_DATABASE_URL = "sqlite:///hub.db"
DEFAULT_KEY_FILE = "keys/hub.key"
HUB_SUBDIRS = ("storage", "logs", "audit")


def system_actor() -> str:
    """Who is acting when no hub user is signed in: the operating-system account."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"os:uid-{os.getuid()}"


@dataclass
class Hub:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    witness: audit.FileWitness
    _keys: LocalKeyProvider | None = None

    @property
    def keys(self) -> LocalKeyProvider:
        """The hub's key provider (the local key file), loaded on first use."""
        if self._keys is None:
            self._keys = LocalKeyProvider(self.settings.key_path)
        return self._keys

    @classmethod
    def open(cls, hub_dir: Path, environ: Mapping[str, str] | None = None) -> Hub:
        """Open the hub in ``hub_dir``: read its settings, reach its database, check its schema."""
        settings = load_settings(hub_dir, environ)
        engine, revision = _reach_database(settings)
        try:
            head = db.SCHEMA_HEAD
            if revision != head:
                raise ConfigError(
                    f"the hub's database schema is at revision {revision}, this hdh uses {head}",
                    hint="run `hdh upgrade` to bring the database up to date",
                )
        except BaseException:
            engine.dispose()
            raise
        return cls._wire(settings, engine)

    @classmethod
    def _wire(cls, settings: Settings, engine: Engine) -> Hub:
        sessions = db.make_sessionmaker(engine)
        witness = audit.FileWitness(settings.audit_head_path)
        hub = cls(settings=settings, engine=engine, sessions=sessions, witness=witness)
        event.listen(sessions, "after_commit", hub._after_commit)
        event.listen(sessions, "after_soft_rollback", _forget_pending_head)
        return hub

    def _after_commit(self, session: Session) -> None:
        pending: Pending | None = session.info.pop(PENDING, None)
        if pending is None:
            return

        def still_in_chain(current: audit.Head) -> bool:
            return pending.continues(current) or self._holds(current)

        try:
            advanced = self.witness.advance(pending.head, still_in_chain)
        except (HubError, OSError) as exc:
            log.error("audit head witness not advanced to #%d: %s", pending.head.seq, exc)
            return
        if not advanced:
            log.error(
                "audit head witness not advanced to #%d: it is missing, or the event it "
                "records is no longer in the database; run `hdh audit verify`",
                pending.head.seq,
            )

    def _holds(self, head: audit.Head) -> bool:
        """Whether the database still has event ``head.seq`` with hash ``head.hash``."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(audit.AuditEvent.hash).where(audit.AuditEvent.seq == head.seq)
            ).scalar()
        return stored == head.hash

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.
        Audit events recorded in it commit with it, then the head witness advances."""
        with self.sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session that sees one consistent state of the database throughout,
        however long it reads and whatever commits meanwhile (verification needs this)."""
        with db.snapshot_connection(self.engine) as conn, Session(bind=conn) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reach_database(settings: Settings) -> tuple[Engine, str]:
    """An engine on the hub's database and the schema revision it is at.

    Raises if the database cannot be reached or holds no hub; never creates an empty
    SQLite file where the hub's database should be.
    """
    path = settings.sqlite_path
    if path is not None and not path.is_file():
        raise ConfigError(
            f"the hub's database file {path} does not exist",
            hint="restore it from a backup, or fix database_url in hub.toml (or HDH_DATABASE_URL)",
        )
    shown = settings.database_url.get_secret_value()
    engine = db.make_engine(settings.sqlalchemy_url())
    try:
        db.check_connection(engine, shown_as=shown)
        revision = db.current_revision(engine)
        if revision is None:
            raise ConfigError(
                f"the database at {mask_url(shown)} holds no hub",
                hint="check database_url in hub.toml (or HDH_DATABASE_URL)",
            )
    except BaseException:
        engine.dispose()
        raise
    return engine, revision


def upgrade_hub(
    hub_dir: Path, environ: Mapping[str, str] | None = None, *, actor: str | None = None
) -> tuple[str | None, str]:
    """Migrate the hub's database to this version's schema; audited when it changed.

    Returns the revisions before and after. Safe to run again: a current schema is left alone.
    """
    settings = load_settings(hub_dir, environ)
    engine, before = _reach_database(settings)
    try:
        db.upgrade(engine)
        after = db.current_revision(engine) or ""
    finally:
        engine.dispose()
    if before != after:
        with Hub.open(hub_dir, environ) as hub, hub.transaction() as session:
            audit.record(
                session,
                actor=actor or system_actor(),
                action="hub.upgrade",
                object_type="hub",
                object_id=settings.name,
                details={"from": before, "to": after},
            )
    return before, after


def _forget_pending_head(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(PENDING, None)


def _check_target(target: Path) -> None:
    if not target.parent.is_dir():
        raise InvalidInput(
            f"cannot create a hub in {target}: its parent folder {target.parent} does not exist",
            hint="create the parent folder first, or choose another path",
        )
    if target.exists() and not target.is_dir():
        raise InvalidInput(
            f"cannot create a hub in {target}: it is a file",
            hint="choose a new or empty folder",
        )
    if (target / CONFIG_FILE).exists():
        raise Conflict(
            f"{target} is already a hub",
            hint=f"use `hdh --hub {target} status` to see it, or choose another folder",
        )
    if target.is_dir() and any(target.iterdir()):
        raise FolderNotEmpty(
            f"{target} is not empty and is not a hub",
            hint="choose a new or empty folder for the hub",
        )


def init_hub(
    target: Path,
    *,
    name: str | None = None,
    database_url: str | None = None,
    country: str = "FR",
    actor: str | None = None,
) -> Hub:
    """Create a hub in ``target`` (a new or empty folder) and return it open.

    Everything is built in a hidden staging folder next to ``target`` and moved into
    place only when complete; on PostgreSQL the schema and the hub's first rows are
    written in one transaction. A failure leaves neither a folder nor tables behind.
    """
    target = target.expanduser().absolute()
    _check_target(target)
    country = country.upper()
    if len(country) != 2 or not country.isalpha():
        raise InvalidInput(
            f"country must be a two-letter ISO 3166 code such as FR, not {country!r}",
            hint="pass --country FR (or the country where the hub's folder is)",
        )
    hub_name = name or target.name
    url = database_url or DEFAULT_DATABASE_URL
    now = audit.utc_timestamp()
    staging = target.parent / f".{target.name}.hdh-init-{uuid.uuid4().hex[:8]}"
    settings = settings_from_mapping(
        {"hub_dir": staging, "name": hub_name, "database_url": url, "key_file": DEFAULT_KEY_FILE},
        source="hdh init",
    )
    engine = db.make_engine(settings.sqlalchemy_url())
    committed = False
    try:
        staging.mkdir(mode=0o700)
        db.check_connection(engine, shown_as=url)
        _check_database_is_empty(engine, url)
        for sub in HUB_SUBDIRS:
            (staging / sub).mkdir()
        create_key_file(settings.key_path, created_at=now)
        (staging / CONFIG_FILE).write_text(
            render_hub_toml(hub_name, url, DEFAULT_KEY_FILE), encoding="utf-8"
        )
        with engine.begin() as conn:
            db.upgrade(conn)
            with Session(bind=conn) as session:
                _first_rows(session, hub_name, country, now)
                first = audit.record(
                    session,
                    actor=actor or system_actor(),
                    action="hub.init",
                    object_type="hub",
                    object_id=hub_name,
                    details={"database": engine.dialect.name, "country": country},
                )
                session.flush()
            # The witness is written before the commit: if it fails, nothing is committed.
            audit.FileWitness(settings.audit_head_path).create(
                audit.Head(seq=first.seq, hash=first.hash)
            )
        committed = True
        if target.is_dir():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        if committed and engine.dialect.name != "sqlite":
            _drop_schema(engine)
        engine.dispose()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    engine.dispose()
    return Hub.open(target)


def _first_rows(session: Session, name: str, country: str, now: str) -> None:
    session.add(HubInfo(id=1, hub_id=str(uuid.uuid4()), name=name, created_at=now))
    session.add(
        Location(
            name="local",
            kind="local",
            uri="storage",
            provider="local-disk",
            region=None,
            country=country,
            certifications=[],
            extraterritorial=[],
            options={},
            credentials={},
            created_at=now,
        )
    )


def _drop_schema(engine: Engine) -> None:
    """Undo a committed ``hdh init`` on a server database (the folder could not be placed)."""
    try:
        db.downgrade_to_empty(engine)
    except Exception:
        log.exception("could not remove the tables hdh init created; drop them by hand")


def _check_database_is_empty(engine: Engine, url: str) -> None:
    tables = inspect(engine).get_table_names()
    if tables:
        raise Conflict(
            f"the database at {mask_url(url)} already holds tables "
            f"({', '.join(sorted(tables)[:5])})",
            hint="give hdh init an empty database of its own",
        )


@dataclass(frozen=True)
class HubStatus:
    name: str
    hub_id: str
    hub_dir: Path
    created_at: str
    database: str
    schema_revision: str | None
    key_file: KeyFileInfo | HubError
    locations: list[dict[str, Any]]
    audit_events: int
    chain: audit.ChainReport

    def to_dict(self) -> dict[str, Any]:
        chain: dict[str, Any] = {
            "ok": self.chain.ok,
            "events": self.chain.events,
            "head": self.chain.head.seq if self.chain.head else None,
            "problem": self.chain.problem.message if self.chain.problem else None,
        }
        key: dict[str, Any] = (
            {"path": str(self.key_file.path), "mode": self.key_file.mode_text, "ok": True}
            if isinstance(self.key_file, KeyFileInfo)
            else {"ok": False, "problem": str(self.key_file)}
        )
        return {
            "name": self.name,
            "hub_id": self.hub_id,
            "hub_dir": str(self.hub_dir),
            "created_at": self.created_at,
            "database": self.database,
            "schema_revision": self.schema_revision,
            "key_file": key,
            "locations": self.locations,
            "audit_events": self.audit_events,
            "audit_chain": chain,
        }


def hub_status(hub: Hub) -> HubStatus:
    """What the hub holds, where, and whether its audit chain verifies (reads only)."""
    settings = hub.settings
    try:
        key_file: KeyFileInfo | HubError = inspect_key_file(settings.key_path)
    except HubError as exc:
        key_file = exc
    with hub.snapshot() as session:
        # The chain first: verification reads the witness before the snapshot's first
        # query, so a commit landing meanwhile cannot look like a removed tail.
        try:
            chain = audit.verify_chain(session, hub.witness)
        except HubError as exc:
            chain = audit.ChainReport(
                events=0, head=None, witness=None, problem=audit.Problem(0, "witness", str(exc))
            )
        info = session.get(HubInfo, 1)
        if info is None:
            raise ConfigError(
                "the database has a hub schema but no hub row",
                hint="the database was partly emptied; restore it from a backup",
            )
        locations = [
            {
                "name": loc.name,
                "kind": loc.kind,
                "uri": loc.uri,
                "provider": loc.provider,
                "region": loc.region,
                "country": loc.country,
                "certifications": list(loc.certifications),
                "extraterritorial": list(loc.extraterritorial),
            }
            for loc in session.scalars(select(Location).order_by(Location.name))
        ]
        events = audit.count_events(session)
    return HubStatus(
        name=settings.name,
        hub_id=info.hub_id,
        hub_dir=settings.hub_dir,
        created_at=info.created_at,
        database=mask_url(settings.database_url.get_secret_value()),
        schema_revision=db.current_revision(hub.engine),
        key_file=key_file,
        locations=locations,
        audit_events=events,
        chain=chain,
    )
