"""The monthly billing run: saved payment methods, the copy of invoices from invoice.events,
runs and their items, ShedLock's lease table, and autopay attempts in payments.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

from common.db import BinaryUUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.add_column("payments", sa.Column("payment_method_id", BinaryUUID(), nullable=True))
    op.add_column("payments", sa.Column("provider_token", sa.String(64), nullable=True))
    op.drop_constraint("ck_payments_kind_known", "payments", type_="check")
    op.create_check_constraint(
        "ck_payments_kind_known", "payments", "kind IN ('invoice', 'topup', 'autopay')"
    )

    op.create_table(
        "payment_methods",
        sa.Column("id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("provider_token", sa.String(64), nullable=False),
        sa.Column("card_number_masked", sa.String(32), nullable=False),
        sa.Column("card_last4", sa.String(4), nullable=False),
        sa.Column("card_expiry", sa.String(7), nullable=False),
        sa.Column("card_name", sa.String(100), nullable=False),
        sa.Column("autopay_consent_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_payment_methods_owner_id_client_id_id",
        "payment_methods",
        ["owner_id", "client_id", "id"],
    )
    op.create_index("ix_payment_methods_owner_id_id", "payment_methods", ["owner_id", "id"])

    op.create_table(
        "invoices",
        sa.Column("invoice_id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("client_email", sa.String(320), nullable=True),
        sa.Column("client_name", sa.String(200), nullable=True),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_invoices_status_due_date", "invoices", ["status", "due_date"])

    op.create_table(
        "billing_runs",
        sa.Column("id", BinaryUUID(), nullable=False),
        sa.Column("schedule", sa.String(40), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_by", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "schedule", "scheduled_for", name="uq_billing_runs_schedule_scheduled_for"
        ),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_billing_runs_status", "billing_runs", ["status"])

    op.create_table(
        "billing_run_items",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", BinaryUUID(), nullable=False),
        sa.Column("invoice_id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=True),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("payment_id", BinaryUUID(), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["billing_runs.id"], name="fk_billing_run_items_run_id_billing_runs"
        ),
        sa.UniqueConstraint("run_id", "invoice_id", name="uq_billing_run_items_run_id_invoice_id"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_billing_run_items_state_next_attempt_at",
        "billing_run_items",
        ["state", "next_attempt_at"],
    )
    op.create_index("ix_billing_run_items_run_id_id", "billing_run_items", ["run_id", "id"])
    op.create_index(
        "ix_billing_run_items_owner_id_run_id_id",
        "billing_run_items",
        ["owner_id", "run_id", "id"],
    )

    op.create_table(
        "scheduler_locks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("lock_until", DATETIME(fsp=6), nullable=False),
        sa.Column("locked_at", DATETIME(fsp=6), nullable=False),
        sa.Column("locked_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("scheduler_locks")
    op.drop_table("billing_run_items")
    op.drop_table("billing_runs")
    op.drop_table("invoices")
    op.drop_table("payment_methods")
    op.drop_constraint("ck_payments_kind_known", "payments", type_="check")
    op.create_check_constraint("ck_payments_kind_known", "payments", "kind IN ('invoice', 'topup')")
    op.drop_column("payments", "provider_token")
    op.drop_column("payments", "payment_method_id")
