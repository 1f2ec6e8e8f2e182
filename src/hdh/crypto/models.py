"""Tables of wrapped data keys."""

from __future__ import annotations

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class DataKey(Base):
    """One object's data key, wrapped by a KEK version; never stored in clear."""

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sensitivity: Mapped[str] = mapped_column(String(20))
    kek_version: Mapped[int] = mapped_column(Integer, index=True)
    wrapped: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
