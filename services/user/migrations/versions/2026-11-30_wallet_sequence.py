"""The wallet's last applied ledger entry: wallet events change the balance on the profile
only when they are newer than it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0: no entry applied yet, which is every existing account's state (balance "0.00").
    op.add_column(
        "users",
        sa.Column("wallet_sequence", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("users", "wallet_sequence")
