"""Tables of the residency policy."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class PolicyRule(Base):
    """Where data of one class may be placed. Every rule that applies must hold."""

    __tablename__ = "policy_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: The class of data it governs (``health``, ``other``) or ``*`` for all.
    data_class: Mapped[str] = mapped_column(String(40))
    #: Allowed countries (ISO 3166 codes, or ``EU``); empty means any country.
    countries: Mapped[list[str]] = mapped_column(JSON)
    #: Certifications a location must declare, all of them.
    certifications: Mapped[list[str]] = mapped_column(JSON)
    forbid_extraterritorial: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[str] = mapped_column(String(32))
