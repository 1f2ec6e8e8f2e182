"""Stored objects, their wrapped data keys, and the residency policy (with its default rule).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sensitivity", sa.String(length=20), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
    )
    op.create_index(op.f("ix_data_keys_kek_version"), "data_keys", ["kek_version"])
    op.create_table(
        "stored_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("plain_size", sa.BigInteger(), nullable=False),
        sa.Column("data_class", sa.String(length=40), nullable=False),
        sa.Column("data_key_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_stored_objects_location_id_locations"),
        ),
        sa.ForeignKeyConstraint(
            ["data_key_id"],
            ["data_keys.id"],
            name=op.f("fk_stored_objects_data_key_id_data_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_objects")),
        sa.UniqueConstraint("location_id", "key", name=op.f("uq_stored_objects_location_id")),
    )
    op.create_index(op.f("ix_stored_objects_location_id"), "stored_objects", ["location_id"])
    op.create_index(op.f("ix_stored_objects_data_key_id"), "stored_objects", ["data_key_id"])
    rules = op.create_table(
        "policy_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("data_class", sa.String(length=40), nullable=False),
        sa.Column("countries", sa.JSON(), nullable=False),
        sa.Column("certifications", sa.JSON(), nullable=False),
        sa.Column("forbid_extraterritorial", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_policy_rules_name")),
    )
    # Every hub starts with health data kept in the EU, away from extraterritorial law.
    op.bulk_insert(
        rules,
        [
            {
                "name": "health-data-in-eu",
                "data_class": "health",
                "countries": ["EU"],
                "certifications": [],
                "forbid_extraterritorial": True,
                "created_at": "2026-11-29T00:00:00.000000Z",
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("policy_rules")
    op.drop_index(op.f("ix_stored_objects_data_key_id"), table_name="stored_objects")
    op.drop_index(op.f("ix_stored_objects_location_id"), table_name="stored_objects")
    op.drop_table("stored_objects")
    op.drop_index(op.f("ix_data_keys_kek_version"), table_name="data_keys")
    op.drop_table("data_keys")
