"""The one row that says which hub a database belongs to."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class HubInfo(Base):
    __tablename__ = "hub"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hub_id: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[str] = mapped_column(String(32))
