"""Idempotency keys: the first answer to each POST sent with an Idempotency-Key, for 24 hours.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from common.db import BinaryUUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        # Binary, so keys differing only in letter case stay apart.
        sa.Column("key", sa.VARBINARY(255), nullable=False),
        sa.Column("fingerprint", sa.BINARY(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=False),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response_headers", sa.Text(), nullable=True),
        sa.Column("response_body", mysql.MEDIUMBLOB(), nullable=True),
        sa.PrimaryKeyConstraint("owner_id", "key"),
        **TABLE_OPTIONS,
    )
    # The clean-up job deletes by age.
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
