"""Clients, invoices with their listing indexes, the outbox and the inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
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
        "clients",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_clients_owner_id_name", "clients", ["owner_id", "name"])

    op.create_table(
        "invoices",
        sa.Column("id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("client_name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name="fk_invoices_client_id_clients"
        ),
        **TABLE_OPTIONS,
    )
    listing_indexes = {
        "ix_invoices_owner_due_client": ["owner_id", "due_date", "client_name"],
        "ix_invoices_owner_client_due": ["owner_id", "client_name", "due_date"],
        "ix_invoices_owner_status_due_client": ["owner_id", "status", "due_date", "client_name"],
        "ix_invoices_owner_status_client_due": ["owner_id", "status", "client_name", "due_date"],
        "ix_invoices_owner_due_status_client": ["owner_id", "due_date", "status", "client_name"],
        "ix_invoices_status_due": ["status", "due_date"],
        "ix_invoices_client_id": ["client_id"],
    }
    for name, columns in listing_indexes.items():
        op.create_index(name, "invoices", columns)

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
    op.drop_table("invoices")
    op.drop_table("clients")
