"""The airlock: export requests, their files and reviews, and the ledger of released cells.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.String(length=32), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("released_at", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_export_requests_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_requests")),
    )
    op.create_index(op.f("ix_export_requests_project_id"), "export_requests", ["project_id"])
    op.create_index(op.f("ix_export_requests_status"), "export_requests", ["status"])
    op.create_table(
        "export_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("comments", sa.JSON(), nullable=False),
        sa.Column("released_key", sa.String(length=400), nullable=True),
        sa.Column("released_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["export_requests.id"],
            name=op.f("fk_export_files_request_id_export_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_files")),
    )
    op.create_index(op.f("ix_export_files_request_id"), "export_files", ["request_id"])
    op.create_table(
        "export_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("reviewed_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["export_requests.id"],
            name=op.f("fk_export_reviews_request_id_export_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_reviews")),
    )
    op.create_index(op.f("ix_export_reviews_request_id"), "export_reviews", ["request_id"])
    op.create_table(
        "released_cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("shape", sa.String(length=400), nullable=False),
        sa.Column("cell", sa.String(length=400), nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["export_requests.id"],
            name=op.f("fk_released_cells_request_id_export_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_released_cells")),
    )
    op.create_index(op.f("ix_released_cells_request_id"), "released_cells", ["request_id"])
    op.create_index(op.f("ix_released_cells_shape"), "released_cells", ["shape"])


def downgrade() -> None:
    op.drop_table("released_cells")
    op.drop_table("export_reviews")
    op.drop_table("export_files")
    op.drop_table("export_requests")
