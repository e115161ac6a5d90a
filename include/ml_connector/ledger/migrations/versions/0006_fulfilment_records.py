"""Fulfilment records: what a two-way pipeline (Business Central <-> ShipStation) did with each item and order.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ml_fulfilment_records",
        sa.Column("pipeline_id", sa.String(250), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("record_key", sa.String(250), primary_key=True),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("document", sa.String(100)),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ml_fulfilment_records")
