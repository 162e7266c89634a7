"""Messages, their attempts and status history, webhook receipts, the outbox and the inbox.

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
        "messages",
        sa.Column("id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("invoice_id", BinaryUUID(), nullable=True),
        sa.Column("recipient_email", sa.String(320), nullable=False),
        sa.Column("recipient_name", sa.String(200), nullable=False),
        sa.Column("reply_to", sa.String(320), nullable=True),
        sa.Column("sender_name", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("attachment_bucket", sa.String(255), nullable=True),
        sa.Column("attachment_key", sa.String(1024), nullable=True),
        sa.Column("attachment_etag", sa.String(200), nullable=True),
        sa.Column("attachment_filename", sa.String(255), nullable=True),
        sa.Column("attachment_size", sa.BigInteger(), nullable=True),
        sa.Column("fee_reference", sa.String(100), nullable=True),
        sa.Column("fee_amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("fee_currency", sa.String(3), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=True),
        sa.Column("provider_message_id", sa.String(255), nullable=True),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("failure_reason", sa.String(200), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_messages_owner_id_created_at_id", "messages", ["owner_id", "created_at", "id"]
    )
    op.create_index(
        "ix_messages_owner_id_invoice_id_created_at_id",
        "messages",
        ["owner_id", "invoice_id", "created_at", "id"],
    )
    op.create_index("ix_messages_status_next_attempt_at", "messages", ["status", "next_attempt_at"])
    op.create_index(
        "ix_messages_provider_provider_message_id", "messages", ["provider", "provider_message_id"]
    )

    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("message_id", BinaryUUID(), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_attempts_message_id_id", "attempts", ["message_id", "id"])

    op.create_table(
        "status_changes",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("message_id", BinaryUUID(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_status_changes_message_id_id", "status_changes", ["message_id", "id"])
    op.create_index(
        "ix_status_changes_provider_status_occurred_at",
        "status_changes",
        ["provider", "status", "occurred_at"],
    )

    op.create_table(
        "webhook_receipts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("receipt_id", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "provider", "receipt_id", name="uq_webhook_receipts_provider_receipt_id"
        ),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_outbox_messages_event_id"),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "inbox_messages",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("handled_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("inbox_messages")
    op.drop_table("outbox_messages")
    op.drop_table("webhook_receipts")
    op.drop_table("status_changes")
    op.drop_table("attempts")
    op.drop_table("messages")
