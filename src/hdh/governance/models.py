"""Tables of governance: research projects and their members."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class Project(Base):
    """A research project. ``status`` moves only through ``TRANSITIONS`` (see
    ``hdh.governance.projects``); each move is audited in the same transaction."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(Text, default="")
    legal_basis: Mapped[str] = mapped_column(Text, default="")
    #: The authorisation it rests on, e.g. "CNIL DR-2026-123 of 2026-03-02".
    approval_ref: Mapped[str] = mapped_column(String(300), default="")
    lead_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    starts_on: Mapped[str | None] = mapped_column(String(10), default=None)
    ends_on: Mapped[str | None] = mapped_column(String(10), default=None)
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: "lead", "analyst" or "viewer".
    role: Mapped[str] = mapped_column(String(20))
    added_at: Mapped[str] = mapped_column(String(32))


class Permit(Base):
    """A project's access to one dataset: the version (pinned, or the latest when None),
    the allowed columns, an optional row filter, and a validity period. ``status`` is
    ``requested``, ``granted``, ``refused`` or ``revoked``; only a granted permit inside
    its validity gives access."""

    __tablename__ = "permits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    columns: Mapped[list[str]] = mapped_column(JSON)
    row_filter: Mapped[str] = mapped_column(Text, default="")
    valid_from: Mapped[str] = mapped_column(String(10))
    valid_until: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: What was asked, kept when the grant is narrower.
    requested: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[str] = mapped_column(String(32))
    decided_by: Mapped[str | None] = mapped_column(String(200), default=None)
    decided_at: Mapped[str | None] = mapped_column(String(32), default=None)
    revoked_at: Mapped[str | None] = mapped_column(String(32), default=None)
    note: Mapped[str] = mapped_column(Text, default="")


class Objection(Base):
    """A person's objection to further use of their data (GDPR art. 21), recorded by the
    hub pseudonym of one of their identifiers under one secret version: never the
    identifier itself. New versions and project reads leave their rows out."""

    __tablename__ = "objections"
    __table_args__ = (UniqueConstraint("pseudonym", "secret_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    secret_version: Mapped[int] = mapped_column(Integer)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")


class ProjectTable(Base):
    """A query result saved inside a project (``hdh query … --save NAME``): an encrypted
    Parquet object in the project's area, usable later as ``saved.NAME`` while the
    permits of every dataset it came from still hold."""

    __tablename__ = "project_tables"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    key: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[str]] = mapped_column(JSON)
    #: The datasets (and saved tables' datasets) it was computed from.
    sources: Mapped[list[str]] = mapped_column(JSON)
    sql: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(32))
    #: The KEK version of each class that wraps its keys (kept inside the file); None
    #: for a table saved before they were recorded.
    kek_versions: Mapped[dict[str, int] | None] = mapped_column(JSON, default=None)


class ProjectExtract(Base):
    """A project's permitted part of one dataset version, as the project sees it
    (allowed columns and rows, the project's pseudonyms), kept as encrypted Parquet
    parts in the project's area and read by its queries. ``fingerprint`` names what it
    was built from (version parts, permit, objections); a change of any of them makes
    the next query build a new one (see ``hdh.workspace.extracts``)."""

    __tablename__ = "project_extracts"
    __table_args__ = (UniqueConstraint("project_id", "dataset", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    #: [{"key", "size", "sha256", "rows", "kek_versions"}] in order (``kek_versions``:
    #: the KEK versions wrapping the part's keys; absent from parts built before they
    #: were recorded).
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(32))


class Job(Base):
    """A script (SQL or Python) run for a project in an isolated process, on the data its
    permits allow (see ``hdh.workspace.jobs``). Its outputs and log stay in the project's
    area, encrypted."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "sql" or "python"
    script_name: Mapped[str] = mapped_column(String(200))
    script: Mapped[str] = mapped_column(Text)
    script_sha256: Mapped[str] = mapped_column(String(64))
    #: queued, running, succeeded, failed, timed_out
    status: Mapped[str] = mapped_column(String(20), index=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    isolation: Mapped[str] = mapped_column(String(40))
    datasets: Mapped[list[str]] = mapped_column(JSON)
    #: [{"name", "key", "size", "sha256"}]: files the job wrote, stored encrypted.
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    location: Mapped[str | None] = mapped_column(String(64), default=None)
    log_key: Mapped[str | None] = mapped_column(String(400), default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    submitted_by: Mapped[str] = mapped_column(String(200))
    submitted_at: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[str | None] = mapped_column(String(32), default=None)
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)
