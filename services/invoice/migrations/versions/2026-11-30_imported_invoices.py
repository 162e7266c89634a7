"""Imported clients and invoices: where from, their platform ids, one row per platform id.

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
    op.add_column("clients", sa.Column("source", sa.String(32), nullable=True))
    op.add_column("clients", sa.Column("external_id", sa.String(64), nullable=True))
    op.create_unique_constraint(
        "uq_clients_owner_id_source_external_id", "clients", ["owner_id", "source", "external_id"]
    )
    for column in (
        sa.Column("source", sa.String(32), nullable=True),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("external_number", sa.String(64), nullable=True),
        sa.Column("external_status", sa.String(16), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.Column("removed_upstream_at", sa.DateTime(), nullable=True),
    ):
        op.add_column("invoices", column)
    op.create_unique_constraint(
        "uq_invoices_owner_id_source_external_id", "invoices", ["owner_id", "source", "external_id"]
    )


def downgrade() -> None:
    op.drop_constraint("uq_invoices_owner_id_source_external_id", "invoices", type_="unique")
    for name in (
        "removed_upstream_at",
        "issued_at",
        "external_status",
        "external_number",
        "external_id",
        "source",
    ):
        op.drop_column("invoices", name)
    op.drop_constraint("uq_clients_owner_id_source_external_id", "clients", type_="unique")
    op.drop_column("clients", "external_id")
    op.drop_column("clients", "source")
