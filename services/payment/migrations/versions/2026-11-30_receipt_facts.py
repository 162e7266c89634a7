"""Receipt facts: the client and the invoice number a succeeded payment tells the email
service, kept on the payment (and on the invoices' copy, for the billing run's charges).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("client_email", sa.String(320), nullable=True))
    op.add_column("payments", sa.Column("client_name", sa.String(200), nullable=True))
    op.add_column("payments", sa.Column("invoice_number", sa.String(32), nullable=True))
    op.add_column("invoices", sa.Column("number", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("invoices", "number")
    op.drop_column("payments", "invoice_number")
    op.drop_column("payments", "client_name")
    op.drop_column("payments", "client_email")
