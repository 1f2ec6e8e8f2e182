"""Migrations between locations: the plan and the state of each object.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
    )
    op.create_table(
        "migration_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("copied_at", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_migration_objects_migration_id_migrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_objects")),
        sa.UniqueConstraint("migration_id", "key", name=op.f("uq_migration_objects_migration_id")),
    )
    op.create_index(
        op.f("ix_migration_objects_migration_id"), "migration_objects", ["migration_id"]
    )
    op.create_index(op.f("ix_migration_objects_state"), "migration_objects", ["state"])


def downgrade() -> None:
    op.drop_table("migration_objects")
    op.drop_table("migrations")
