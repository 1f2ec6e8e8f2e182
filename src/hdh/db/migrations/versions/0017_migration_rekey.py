"""Re-keying migrations: whether a migration gives its copies new keys, and for each
object the size, SHA-256 and keys of its copy and the keys of its source; and the KEK
versions that wrap each saved table's keys.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("rekey", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("project_tables") as batch:
        batch.add_column(sa.Column("kek_versions", sa.JSON(), nullable=True))
    with op.batch_alter_table("migration_objects") as batch:
        batch.add_column(sa.Column("copy_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("copy_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("copy_key_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("source_key_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("copy_keks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("source_keks", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migration_objects") as batch:
        for column in (
            "source_keks",
            "copy_keks",
            "source_key_id",
            "copy_key_id",
            "copy_sha256",
            "copy_size",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("rekey")
    with op.batch_alter_table("project_tables") as batch:
        batch.drop_column("kek_versions")
