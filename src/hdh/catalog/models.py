"""Tables of the catalogue: datasets and their immutable versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hdh.db.engine import Base


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    data_class: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300), default="", server_default="")
    producer: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: One of FREQUENCIES (the EU frequency vocabulary, in words).
    frequency: Mapped[str] = mapped_column(String(20), default="unknown", server_default="unknown")
    legal_basis: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: Tables ingested together from one folder (an OMOP CDM, an SNDS product) share one.
    collection: Mapped[str | None] = mapped_column(String(100), index=True, default=None)
    keywords: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    #: The imported Table Schema the dataset's versions were validated against.
    schema_name: Mapped[str | None] = mapped_column(String(200), default=None)
    updated_at: Mapped[str] = mapped_column(String(32), default="", server_default="")


class DatasetVersion(Base):
    """One published version. It exists only once all its parts are stored: the row is
    committed last, with its audit event, so a failed ingest leaves no version."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), index=True)
    source_name: Mapped[str] = mapped_column(String(400))
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(32))


FREQUENCIES = ("annual", "quarterly", "monthly", "weekly", "daily", "irregular", "never", "unknown")


class CatalogSchema(Base):
    """A Frictionless Table Schema imported into the catalogue (``hdh catalog import-schema``):
    a table's description, or a nomenclature's (a reference table of codes and labels)."""

    __tablename__ = "catalog_schemas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # "table" or "nomenclature"
    product: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    descriptor: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[str] = mapped_column(String(32))
