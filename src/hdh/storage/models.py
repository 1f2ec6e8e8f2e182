"""Tables of storage locations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class Location(Base):
    """A named place where the hub keeps objects, with the jurisdiction it sits in.

    ``uri`` says where the objects are, for people (a folder for ``local``, relative to
    the hub folder or absolute; ``s3://bucket/prefix``; ``az://account/container/prefix``).
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
    #: Where the objects are: endpoint, bucket or account and container, prefix.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Where the credentials are (environment variable names or a file), never the secrets.
    credentials: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    preset: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[str] = mapped_column(String(32))


class StoredObject(Base):
    """An object the hub wrote to a location: where, how big, its SHA-256 as stored,
    the class of data it holds and the data key it is encrypted with."""

    __tablename__ = "stored_objects"
    __table_args__ = (UniqueConstraint("location_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), index=True)
    key: Mapped[str] = mapped_column(String(1000))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    plain_size: Mapped[int] = mapped_column(BigInteger)
    data_class: Mapped[str] = mapped_column(String(40))
    #: ``envelope`` (data key in data_keys) or ``parquet`` (keys inside the file).
    format: Mapped[str] = mapped_column(String(20), default="envelope")
    data_key_id: Mapped[str | None] = mapped_column(ForeignKey("data_keys.id"), index=True)
    created_at: Mapped[str] = mapped_column(String(32))
