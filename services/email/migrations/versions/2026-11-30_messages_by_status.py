"""Messages by owner and status, newest first: the emails listing filtered by status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_owner_id_status_created_at_id",
        "messages",
        ["owner_id", "status", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_messages_owner_id_status_created_at_id", table_name="messages")
