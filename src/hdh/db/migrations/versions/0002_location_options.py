"""Locations: where their objects are, where their credentials are, and their preset.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("locations") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("credentials", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("preset", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("locations") as batch:
        batch.drop_column("preset")
        batch.drop_column("credentials")
        batch.drop_column("options")
