"""Catalogue metadata on datasets (title, producer, frequency, legal basis, collection,
keywords, schema) and the imported Table Schemas.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("title", sa.String(length=300), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("producer", sa.String(length=300), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("frequency", sa.String(length=20), nullable=False, server_default="unknown")
        )
        batch.add_column(sa.Column("legal_basis", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("collection", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("keywords", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("schema_name", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("updated_at", sa.String(length=32), nullable=False, server_default="")
        )
        batch.create_index(batch.f("ix_datasets_collection"), ["collection"])
    op.create_table(
        "catalog_schemas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("descriptor", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_schemas")),
        sa.UniqueConstraint("name", name=op.f("uq_catalog_schemas_name")),
    )


def downgrade() -> None:
    op.drop_table("catalog_schemas")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index(batch.f("ix_datasets_collection"))
        for column in (
            "updated_at",
            "schema_name",
            "keywords",
            "collection",
            "legal_basis",
            "frequency",
            "producer",
            "title",
        ):
            batch.drop_column(column)
