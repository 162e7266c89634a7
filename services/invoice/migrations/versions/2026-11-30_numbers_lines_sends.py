"""Invoice numbers, lines and versions; owners' profile versions; send requests.

Existing invoices are numbered per owner in the order they were created, and each owner's
counter continues after its last number.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from common.db import BinaryUUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.add_column("invoices", sa.Column("number", sa.String(32), nullable=True))
    op.add_column(
        "invoices", sa.Column("version", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column(
        "owners", sa.Column("profile_version", sa.Integer(), nullable=False, server_default="1")
    )
    op.execute(
        """
        UPDATE invoices
        JOIN (
            SELECT id, ROW_NUMBER() OVER (PARTITION BY owner_id ORDER BY created_at, id) AS n
            FROM invoices
        ) AS numbered ON numbered.id = invoices.id
        SET invoices.number = CONCAT('INV-', LPAD(numbered.n, 6, '0'))
        """
    )
    op.alter_column("invoices", "number", existing_type=sa.String(32), nullable=False)
    op.create_unique_constraint("uq_invoices_owner_number", "invoices", ["owner_id", "number"])

    op.create_table(
        "invoice_counters",
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id"),
        **TABLE_OPTIONS,
    )
    op.execute(
        "INSERT INTO invoice_counters (owner_id, last_number) "
        "SELECT owner_id, COUNT(*) FROM invoices GROUP BY owner_id"
    )

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", BinaryUUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("quantity", sa.Numeric(12, 3), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_lines_invoice_id_invoices"
        ),
        sa.UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_position"),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "invoice_sends",
        sa.Column("id", BinaryUUID(), nullable=False),
        sa.Column("owner_id", BinaryUUID(), nullable=False),
        sa.Column("invoice_id", BinaryUUID(), nullable=False),
        sa.Column("recipient_email", sa.String(320), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("pdf_key", sa.String(300), nullable=False),
        sa.Column("fee_reference", sa.String(100), nullable=False),
        sa.Column("fee_amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("fee_currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_invoice_sends_invoice_id_invoices"
        ),
        sa.UniqueConstraint("fee_reference", name="uq_invoice_sends_fee_reference"),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_invoice_sends_owner_id_invoice_id", "invoice_sends", ["owner_id", "invoice_id"]
    )


def downgrade() -> None:
    op.drop_table("invoice_sends")
    op.drop_table("invoice_lines")
    op.drop_table("invoice_counters")
    op.drop_constraint("uq_invoices_owner_number", "invoices", type_="unique")
    op.drop_column("invoices", "number")
    op.drop_column("invoices", "version")
    op.drop_column("owners", "profile_version")
