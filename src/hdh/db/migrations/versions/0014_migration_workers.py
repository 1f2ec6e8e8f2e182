"""Migrations at scale: sizes past 2 GiB, claims by workers, per-wave cutover,
decommissioning.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.alter_column("bytes", type_=sa.BigInteger(), existing_nullable=False)
        batch.add_column(sa.Column("cut_over_at", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("decommissioned_at", sa.String(length=32), nullable=True))
    with op.batch_alter_table("migration_objects") as batch:
        batch.alter_column("size", type_=sa.BigInteger(), existing_nullable=False)
        batch.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("last_run", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("copied_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migration_objects") as batch:
        batch.drop_column("copied_by")
        batch.drop_column("last_run")
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
        batch.alter_column("size", type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("decommissioned_at")
        batch.drop_column("cut_over_at")
        batch.alter_column("bytes", type_=sa.Integer(), existing_nullable=False)
