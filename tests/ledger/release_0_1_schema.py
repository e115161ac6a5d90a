"""The ledger schema as release 0.1.0 created it (``metadata.create_all``, no version table), frozen.

The migration tests build a ledger with exactly these tables, put rows in them, and check that opening it with
the current code stamps it at revision 0001 and upgrades it without losing a row. Never edit this file: it is a
record of what is deployed, not of what the code wants now.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_now = sa.func.current_timestamp()

shipments = sa.Table(
    "ml_shipments",
    metadata,
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
sa.Index("ix_ml_shipments_pipeline_state", shipments.c.pipeline, shipments.c.state)
sa.Index("ix_ml_shipments_pipeline_number", shipments.c.pipeline, shipments.c.order_number)

packages = sa.Table(
    "ml_packages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shipment_pk", sa.Integer, sa.ForeignKey("ml_shipments.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("tracking_number", sa.String(40), nullable=False, unique=True),
    sa.Column("label_path", sa.Text),
    sa.Column("status", sa.String(20)),
    sa.Column("delivered_at", sa.String(40)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

audit_log = sa.Table(
    "ml_audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shipment_pk", sa.Integer, index=True),
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

tracking_events = sa.Table(
    "ml_tracking_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tracking_number", sa.String(40), nullable=False, index=True),
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

track_alert_subscriptions = sa.Table(
    "ml_track_alert_subscriptions",
    metadata,
    sa.Column("tracking_number", sa.String(40), primary_key=True),
    sa.Column("pipeline", sa.String(100)),
    sa.Column("subscribed_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
)

webhook_inbox = sa.Table(
    "ml_webhook_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("dedupe_key", sa.String(250), unique=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("processed_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
)
sa.Index("ix_ml_webhook_inbox_pending", webhook_inbox.c.source, webhook_inbox.c.processed_at)

secrets = sa.Table(
    "ml_secrets",
    metadata,
    sa.Column("name", sa.String(250), primary_key=True),
    sa.Column("ciphertext", sa.Text),
    sa.Column("expires_at", sa.Float),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)
