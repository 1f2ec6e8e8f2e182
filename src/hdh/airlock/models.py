"""Tables of the airlock: export requests, their files, reviews, and released cells."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class ExportRequest(Base):
    """A project's request to take files out. ``status`` moves only through
    ``hdh.airlock.service.TRANSITIONS``; each move is audited in its transaction."""

    __tablename__ = "export_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(64))
    #: The thresholds the checks ran with.
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The datasets the files were computed from (the jobs' datasets).
    datasets: Mapped[list[str]] = mapped_column(JSON)
    released_at: Mapped[str | None] = mapped_column(String(32), default=None)


class ExportFile(Base):
    """One file of a request: the copy checked (in the airlock's area), the checks'
    report, and once released, the copy that left (suppressed where needed)."""

    __tablename__ = "export_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(300))  # "job 3: tables/x.csv"
    #: frequency, magnitude, model, table, figure, text
    kind: Mapped[str] = mapped_column(String(20))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(400))
    #: pass (nothing found), suppressed (cells hidden in the release), review (a
    #: reviewer must judge it: figures, text, undeclared tables), fail (differencing, or
    #: a model with too few residual degrees of freedom).
    verdict: Mapped[str] = mapped_column(String(20))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    comments: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    released_key: Mapped[str | None] = mapped_column(String(400), default=None)
    released_sha256: Mapped[str | None] = mapped_column(String(64), default=None)


class ExportReview(Base):
    """A reviewer's decision on a request."""

    __tablename__ = "export_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(20))  # approve, reject, return
    comment: Mapped[str] = mapped_column(Text, default="")
    reviewed_at: Mapped[str] = mapped_column(String(32))


class ReleasedCell(Base):
    """The ledger of released counts: one row per released cell of a frequency or
    magnitude table, to catch differencing across releases."""

    __tablename__ = "released_cells"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id"), index=True)
    file_name: Mapped[str] = mapped_column(String(300))
    #: The dimensions and statistic of the table, e.g. "sex | agegroup | count".
    shape: Mapped[str] = mapped_column(String(400), index=True)
    cell: Mapped[str] = mapped_column(String(400))  # the labels, JSON
    people: Mapped[int] = mapped_column(Integer)
    datasets: Mapped[list[str]] = mapped_column(JSON)
