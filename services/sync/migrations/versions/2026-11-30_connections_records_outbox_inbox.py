"""Connections with their sync checkpoint, synced records, the outbox and the inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from common.db import BinaryUUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", BinaryUUID(), primary_key=True),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("api_key_sealed", sa.LargeBinary(1024), nullable=False),
        sa.Column("api_key_key_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job_token", sa.String(36), nullable=True),
        sa.Column("queued_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("scan_number", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("cursor", sa.String(200), nullable=True),
        sa.Column("pages_read", sa.Integer(), nullable=False),
        sa.Column("invoices_seen", sa.Integer(), nullable=False),
        sa.Column("invoices_changed", sa.Integer(), nullable=False),
        sa.Column("invoices_skipped", sa.Integer(), nullable=False),
        sa.Column("scan_started_at", sa.DateTime(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("last_error_at", sa.DateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("manual_run_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("owner_id", name="uq_connections_owner_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_connections_state_next_attempt_at", "connections", ["state", "next_attempt_at"]
    )
    op.create_table(
        "synced_records",
        sa.Column("connection_id", BinaryUUID(), primary_key=True),
        sa.Column("kind", sa.String(1), primary_key=True),
        sa.Column("external_id", sa.String(64), primary_key=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("seen_scan", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_synced_records_connection_id_kind_seen_scan",
        "synced_records",
        ["connection_id", "kind", "seen_scan"],
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_outbox_messages_event_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "inbox_messages",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("handled_at", sa.DateTime(), nullable=False),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("inbox_messages")
    op.drop_table("outbox_messages")
    op.drop_table("synced_records")
    op.drop_table("connections")
