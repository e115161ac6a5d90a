"""Rate budgets: one row per API account whose calls every task and worker share (Exact Online's 60 calls a
minute and 5,000 a day per company, and its block after more than 10 error answers an hour).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ml_rate_budgets",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("minute_remaining", sa.Integer),
        sa.Column("minute_reset", sa.Float),
        sa.Column("day_remaining", sa.Integer),
        sa.Column("day_reset", sa.Float),
        sa.Column("window_start", sa.Float),
        sa.Column("window_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("errors_since", sa.Float),
        sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("ml_rate_budgets")
