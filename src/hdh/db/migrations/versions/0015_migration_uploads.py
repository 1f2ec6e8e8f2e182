"""Large objects copied part by part: the open upload of each, so that a copy cut short
goes on from the parts the target holds.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migration_objects") as batch:
        batch.add_column(sa.Column("upload_id", sa.String(length=400), nullable=True))
        batch.add_column(
            sa.Column("reused_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("migration_objects") as batch:
        batch.drop_column("reused_bytes")
        batch.drop_column("upload_id")
