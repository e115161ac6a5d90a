"""Secrets: a lease for the refresh, and room for a refused-token circuit breaker.

``lease_owner``/``lease_expires_at``: the process that is refreshing the value (the token request runs with
no transaction open; the others wait for the lease to be released, or take it over once it expires).
``refused_until``/``refused_reason``: when the issuer last refused a refresh and until when not to ask again.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN of nullable columns: no table rebuild on SQLite
    op.add_column("ml_secrets", sa.Column("lease_owner", sa.String(200)))
    op.add_column("ml_secrets", sa.Column("lease_expires_at", sa.Float))
    op.add_column("ml_secrets", sa.Column("refused_until", sa.Float))
    op.add_column("ml_secrets", sa.Column("refused_reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("ml_secrets") as batch:
        for column in ("refused_reason", "refused_until", "lease_expires_at", "lease_owner"):
            batch.drop_column(column)
