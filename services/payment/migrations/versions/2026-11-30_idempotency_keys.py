"""Idempotency keys: the first answer to each POST sent with an Idempotency-Key, for 24 hours;
and a top-up's key on its payment, so the top-up is made once per key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from common.db import BinaryUUID

revision = "0002"
down_revision = "0001"
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

    # The stored answer commits after the top-up does: a crash in between lets the request run
    # again, and this is what it finds instead of charging the card twice.
    op.add_column("payments", sa.Column("active_topup_key", sa.VARBINARY(255), nullable=True))
    op.create_unique_constraint(
        "uq_payments_owner_id_active_topup_key", "payments", ["owner_id", "active_topup_key"]
    )
    op.create_check_constraint(
        # op.f: the name as written; the naming convention would prefix it a second time.
        op.f("ck_payments_failed_releases_topup_key"),
        "payments",
        "status <> 'failed' OR active_topup_key IS NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_payments_failed_releases_topup_key"), "payments", type_="check")
    op.drop_constraint("uq_payments_owner_id_active_topup_key", "payments", type_="unique")
    op.drop_column("payments", "active_topup_key")
    op.drop_table("idempotency_keys")
