"""Payments, wallet accounts and their ledger, the outbox and the inbox.

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
        "payments",
        sa.Column("id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("invoice_id", BinaryUUID(), nullable=True),
        sa.Column("active_invoice_id", BinaryUUID(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("provider_charge_id", sa.String(64), nullable=True),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("card_number_masked", sa.String(32), nullable=False),
        sa.Column("card_last4", sa.String(4), nullable=False),
        sa.Column("card_expiry", sa.String(7), nullable=False),
        sa.Column("card_name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        # One payment at a time holds an invoice: a second attempt fails on insert.
        sa.UniqueConstraint("active_invoice_id", name="uq_payments_active_invoice_id"),
        sa.CheckConstraint("amount > 0", name="ck_payments_amount_positive"),
        sa.CheckConstraint(
            "status IN ('processing', 'unknown', 'succeeded', 'failed')",
            name="ck_payments_status_known",
        ),
        sa.CheckConstraint("kind IN ('invoice', 'topup')", name="ck_payments_kind_known"),
        sa.CheckConstraint(
            "status <> 'failed' OR active_invoice_id IS NULL",
            name="ck_payments_failed_releases_invoice",
        ),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_payments_owner_id_id", "payments", ["owner_id", "id"])
    op.create_index("ix_payments_status_created_at", "payments", ["status", "created_at"])

    op.create_table(
        "wallet_accounts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance", sa.Numeric(12, 2), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "currency", name="uq_wallet_accounts_owner_id_currency"),
        # The last guard: whatever the code does, a balance below zero is refused.
        sa.CheckConstraint("balance >= 0", name="ck_wallet_accounts_balance_not_negative"),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "wallet_entries",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("balance_after", sa.Numeric(12, 2), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("payment_id", BinaryUUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["wallet_accounts.id"],
            name="fk_wallet_entries_account_id_wallet_accounts",
        ),
        sa.UniqueConstraint("account_id", "sequence", name="uq_wallet_entries_account_id_sequence"),
        # The same top-up, fee or refund is applied once.
        sa.UniqueConstraint(
            "owner_id", "type", "reference", name="uq_wallet_entries_owner_id_type_reference"
        ),
        sa.CheckConstraint(
            "balance_after >= 0", name="ck_wallet_entries_balance_after_not_negative"
        ),
        sa.CheckConstraint("amount <> 0", name="ck_wallet_entries_amount_not_zero"),
        sa.CheckConstraint(
            "type IN ('topup', 'fee', 'refund')", name="ck_wallet_entries_type_known"
        ),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_wallet_entries_owner_id_id", "wallet_entries", ["owner_id", "id"])

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
    op.drop_table("wallet_entries")
    op.drop_table("wallet_accounts")
    op.drop_table("payments")
