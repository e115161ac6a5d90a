"""The ledger of release 0.1.0: shipments, packages, audit log, tracking events, subscriptions, inbox, secrets.

Release 0.1.0 created these tables with ``metadata.create_all`` and kept no version table; such a ledger is
stamped with this revision instead of running it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_now = sa.func.current_timestamp()


def upgrade() -> None:
    op.create_table(
        "ml_shipments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(100), nullable=False),
        sa.Column("erp", sa.String(40), nullable=False),
        sa.Column("erp_id", sa.String(100), nullable=False),
        sa.Column("order_number", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reference", sa.String(100)),
        sa.Column("service_code", sa.String(4)),
        sa.Column("residential", sa.Boolean),
        sa.Column("order_json", sa.JSON),
        sa.Column("order_modified_at", sa.String(40)),
        sa.Column("shipment_id", sa.String(40)),
        sa.Column("tracking_numbers", sa.JSON),
        sa.Column("label_path", sa.Text),
        sa.Column("charges", sa.String(40)),
        sa.Column("tracking_status", sa.String(20)),
        sa.Column("delivered_at", sa.String(40)),
        sa.Column("error", sa.Text),
        sa.Column("error_step", sa.String(40)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claim_expires_at", sa.Float),
        sa.Column("last_run_id", sa.String(250)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.UniqueConstraint("pipeline", "erp_id", name="uq_ml_shipments_pipeline_erp_id"),
    )
    op.create_index("ix_ml_shipments_pipeline_state", "ml_shipments", ["pipeline", "state"])
    op.create_index("ix_ml_shipments_pipeline_number", "ml_shipments", ["pipeline", "order_number"])

    op.create_table(
        "ml_packages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("shipment_pk", sa.Integer, sa.ForeignKey("ml_shipments.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("tracking_number", sa.String(40), nullable=False, unique=True),
        sa.Column("label_path", sa.Text),
        sa.Column("status", sa.String(20)),
        sa.Column("delivered_at", sa.String(40)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )

    op.create_table(
        "ml_audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("shipment_pk", sa.Integer),
        sa.Column("pipeline", sa.String(100)),
        sa.Column("order_number", sa.String(100)),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("from_state", sa.String(20)),
        sa.Column("to_state", sa.String(20)),
        sa.Column("message", sa.Text),
        sa.Column("detail", sa.JSON),
        sa.Column("actor", sa.String(250)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )
    op.create_index("ix_ml_audit_log_shipment_pk", "ml_audit_log", ["shipment_pk"])

    op.create_table(
        "ml_tracking_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tracking_number", sa.String(40), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("code", sa.String(10)),
        sa.Column("description", sa.Text),
        sa.Column("occurred_at", sa.String(40), nullable=False),
        sa.Column("location", sa.Text),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("written_to_erp", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )
    op.create_index("ix_ml_tracking_events_tracking_number", "ml_tracking_events", ["tracking_number"])

    op.create_table(
        "ml_track_alert_subscriptions",
        sa.Column("tracking_number", sa.String(40), primary_key=True),
        sa.Column("pipeline", sa.String(100)),
        sa.Column("subscribed_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
    )

    op.create_table(
        "ml_webhook_inbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("dedupe_key", sa.String(250), unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_ml_webhook_inbox_pending", "ml_webhook_inbox", ["source", "processed_at"])

    op.create_table(
        "ml_secrets",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("ciphertext", sa.Text),
        sa.Column("expires_at", sa.Float),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )


def downgrade() -> None:
    for table in ("ml_secrets", "ml_webhook_inbox", "ml_track_alert_subscriptions", "ml_tracking_events",
                  "ml_audit_log", "ml_packages", "ml_shipments"):
        op.drop_table(table)
