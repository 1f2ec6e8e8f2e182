"""Project extracts: each project's permitted part of a dataset version, kept encrypted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_extracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_project_extracts_location_id_locations"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_project_extracts_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_extracts")),
        sa.UniqueConstraint(
            "project_id", "dataset", "fingerprint", name=op.f("uq_project_extracts_project_id")
        ),
    )
    op.create_index(op.f("ix_project_extracts_project_id"), "project_extracts", ["project_id"])
    op.create_index(op.f("ix_project_extracts_dataset"), "project_extracts", ["dataset"])


def downgrade() -> None:
    op.drop_table("project_extracts")
