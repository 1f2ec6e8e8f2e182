"""Tables of storage locations."""

from __future__ import annotations

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class Location(Base):
    """A named place where the hub keeps objects, with the jurisdiction it sits in.

    ``uri`` is where the objects are (a folder for ``local``; bucket and endpoint
    come with the S3 and Azure kinds). Credentials are never stored here.
    """

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    uri: Mapped[str] = mapped_column(String(1000))
    provider: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    certifications: Mapped[list[str]] = mapped_column(JSON)
    extraterritorial: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(32))
