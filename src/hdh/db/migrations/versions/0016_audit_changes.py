"""The number of the latest event that may have changed something (a success), beside
the latest event's: refusals and failures, which change nothing, do not move it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch:
        batch.add_column(sa.Column("changed_seq", SEQ, nullable=False, server_default="0"))
    op.execute("UPDATE audit_chain SET changed_seq = seq")


def downgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch:
        batch.drop_column("changed_seq")
