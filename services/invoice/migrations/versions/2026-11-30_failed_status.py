"""FAILED invoices: the reason the monthly billing run gave up charging one.

The status itself is text (no CHECK lists its values), so only the reason is new.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("failure_reason", sa.String(40), nullable=True))


def downgrade() -> None:
    op.drop_column("invoices", "failure_reason")
