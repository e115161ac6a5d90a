"""In-flight budgets: the calls each running task has in flight per API account, shared by every lane, DAG and
worker that calls the account (``ml_in_flight``).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ml_in_flight",
        sa.Column("api", sa.String(250), primary_key=True),
        sa.Column("holder", sa.String(250), primary_key=True),
        sa.Column("slots", sa.Integer, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("ml_in_flight")
