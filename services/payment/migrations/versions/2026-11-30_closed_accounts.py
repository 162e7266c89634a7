"""Closed accounts: the users deleted, and when, so their unexpired tokens are refused here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from common.db import BinaryUUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "closed_accounts",
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id"),
        **TABLE_OPTIONS,
    )
    # The token gate reads only the deletions younger than the longest token lifetime.
    op.create_index("ix_closed_accounts_deleted_at", "closed_accounts", ["deleted_at"])


def downgrade() -> None:
    op.drop_table("closed_accounts")
