"""Tracking at scale: per-package tracking state and the Track Alert subscription's style and fallback.

``ml_package_tracking``: one row per tracked package: its canonical status from whichever source (Track API
poll, Track Alert webhook, Quantum View) spoke last, the newest event's time, when a pushed event last arrived
and when the Track API was last asked. ``poll_tracking`` decides from it which packages cost a Track API call.
``ml_track_alert_subscriptions`` gains ``style`` (v1 | v2), ``error`` (the last failure) and ``quantum_view``
(a failed renewal hands the number to Quantum View).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ml_package_tracking",
        sa.Column("tracking_number", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("last_event_at", sa.Float),
        sa.Column("last_source", sa.String(20)),
        sa.Column("pushed_at", sa.Float),
        sa.Column("polled_at", sa.Float),
        sa.Column("delivered_at", sa.String(40)),
        sa.Column("received_by", sa.String(100)),
        sa.Column("location", sa.Text),
        sa.Column("stale_reported_at", sa.Float),
    )
    # plain ADD COLUMN (nullable, or NOT NULL with a default): no table rebuild on SQLite
    op.add_column("ml_track_alert_subscriptions", sa.Column("style", sa.String(10)))
    op.add_column("ml_track_alert_subscriptions", sa.Column("error", sa.Text))
    op.add_column("ml_track_alert_subscriptions",
                  sa.Column("quantum_view", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("ml_track_alert_subscriptions") as batch:
        batch.drop_column("quantum_view")
        batch.drop_column("error")
        batch.drop_column("style")
    op.drop_table("ml_package_tracking")
