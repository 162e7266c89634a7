"""The trace context of the operation that queued a message, so its sending joins the trace.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("traceparent", sa.String(55), nullable=True))
    op.add_column("messages", sa.Column("tracestate", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "tracestate")
    op.drop_column("messages", "traceparent")
