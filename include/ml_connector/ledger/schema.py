"""Ledger tables (SQLAlchemy Core) as of the newest migration, and the shipment state machine.

The tables are created and changed by the Alembic revisions in ``migrations/versions`` (run on first use of a
ledger); this module describes the result, which the code queries. Same schema on SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa

metadata = sa.MetaData()


class ShipmentState(enum.StrEnum):
    """States of one ERP document in one pipeline (docs/architecture.md, "Exactly once"); :data:`TRANSITIONS`
    lists the allowed moves."""

    EXTRACTED = "extracted"
    ADDRESS_OK = "address_ok"
    QUARANTINED = "quarantined"
    LABEL_REQUESTED = "label_requested"
    LABEL_UNCERTAIN = "label_uncertain"
    LABELLED = "labelled"
    WRITTEN_BACK = "written_back"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    VOIDED = "voided"
    RETURNED = "returned"  # tracking: the carrier returned the parcel to the shipper


S = ShipmentState
#: Allowed moves. Re-entering a state is always allowed (idempotent re-runs); anything else raises.
TRANSITIONS: dict[ShipmentState, frozenset[ShipmentState]] = {
    # -> labelled from a state before label_requested: a label found by reference (an earlier attempt bought
    # it) or recorded by a person is adopted, nothing is bought
    S.EXTRACTED: frozenset({S.ADDRESS_OK, S.QUARANTINED, S.LABEL_REQUESTED, S.LABELLED}),
    S.ADDRESS_OK: frozenset({S.LABEL_REQUESTED, S.QUARANTINED, S.EXTRACTED, S.LABELLED}),
    # a quarantined order that was fixed in the ERP (or released by a person) is extracted again
    S.QUARANTINED: frozenset({S.EXTRACTED, S.LABELLED}),
    # -> address_ok: the carrier refused before processing (429) or the request never left; -> quarantined:
    # the carrier refused the data (no label exists); -> label_uncertain: the outcome is unknown
    S.LABEL_REQUESTED: frozenset({S.LABELLED, S.QUARANTINED, S.ADDRESS_OK, S.LABEL_UNCERTAIN}),
    # the only ways out: a label found by reference (or recorded by a person) is adopted, or a person decides to
    # buy anew (-> address_ok, rebuy_at set). Never quarantined: that would hide a label that may exist.
    S.LABEL_UNCERTAIN: frozenset({S.LABELLED, S.ADDRESS_OK}),
    S.LABELLED: frozenset({S.WRITTEN_BACK, S.IN_TRANSIT, S.DELIVERED, S.EXCEPTION, S.VOIDED, S.RETURNED}),
    S.WRITTEN_BACK: frozenset({S.IN_TRANSIT, S.DELIVERED, S.EXCEPTION, S.VOIDED, S.RETURNED}),
    S.IN_TRANSIT: frozenset({S.DELIVERED, S.EXCEPTION, S.VOIDED, S.RETURNED}),
    S.EXCEPTION: frozenset({S.IN_TRANSIT, S.DELIVERED, S.VOIDED, S.RETURNED}),
    S.DELIVERED: frozenset(),
    S.VOIDED: frozenset(),
    S.RETURNED: frozenset(),
}

#: States in which a label exists: create_shipment must never buy another one.
LABELLED_STATES = frozenset({S.LABELLED, S.WRITTEN_BACK, S.IN_TRANSIT, S.DELIVERED, S.EXCEPTION, S.RETURNED})
#: States a purchase may be under way or may have happened in, with no label recorded: nothing may quarantine
#: them, and nothing but an adopted label or a person's decision moves them on.
PURCHASE_OPEN_STATES = frozenset({S.LABEL_REQUESTED, S.LABEL_UNCERTAIN})
#: States that a later run picks up again (unfinished work). Rows with a lookup by reference pending
#: (``next_lookup_at`` set: ``label_uncertain`` in its settle window, or a rebuy's watch) are picked up too.
UNFINISHED_STATES = frozenset({S.EXTRACTED, S.ADDRESS_OK, S.LABEL_REQUESTED, S.LABELLED})
#: States whose packages are still tracked.
TRACKED_STATES = frozenset({S.LABELLED, S.WRITTEN_BACK, S.IN_TRANSIT, S.EXCEPTION})

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
    # revision 0003: when a purchase was first attempted. Set once, never cleared: every later purchase of
    # this order first looks it up by reference (quarantine, re-extraction and replays keep it)
    sa.Column("label_requested_at", sa.DateTime(timezone=True)),
    # revision 0003: label_uncertain since (epoch seconds); lookups by reference made since; when the next
    # one is due and until when they go on (the settle window; after a rebuy, the watch for the abandoned
    # label). ``next_lookup_at`` NULL: no lookup pending.
    sa.Column("uncertain_since", sa.Float),
    sa.Column("lookup_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_lookup_at", sa.Float),
    sa.Column("lookup_until", sa.Float),
    # revision 0003: a person decided to buy anew (epoch seconds); a label of the abandoned attempt that
    # turns up later is voided
    sa.Column("rebuy_at", sa.Float),
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
    # active | invalid (the carrier refused the number) | failed (a renewal failed: Quantum View takes over) |
    # ended (the package reached a final status: not renewed)
    sa.Column("status", sa.String(20), nullable=False),
    # revision 0004: Track Alert style (v1 | v2), the last failure, and Quantum View as this number's fallback
    sa.Column("style", sa.String(10)),
    sa.Column("error", sa.Text),
    sa.Column("quantum_view", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # revision 0002: the process refreshing the value holds the lease until it stores the new one
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", sa.Float),
    # revision 0002: the issuer refused a refresh; do not ask again before ``refused_until``
    sa.Column("refused_until", sa.Float),
    sa.Column("refused_reason", sa.Text),
)

# -- tracking (revision 0004) ------------------------------------------------------------------------------

package_tracking = sa.Table(
    "ml_package_tracking",
    metadata,
    # one row per tracked package: its canonical status from whichever source spoke last, and when each
    # source last spoke (poll_tracking decides from these which packages cost a Track API call)
    sa.Column("tracking_number", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("last_event_at", sa.Float),  # newest event's time (epoch seconds, UTC)
    sa.Column("last_source", sa.String(20)),  # poll | webhook | quantum_view
    sa.Column("pushed_at", sa.Float),  # when a pushed event (webhook, Quantum View) last arrived
    sa.Column("polled_at", sa.Float),  # when the Track API was last asked
    sa.Column("delivered_at", sa.String(40)),
    sa.Column("received_by", sa.String(100)),
    sa.Column("location", sa.Text),
    sa.Column("stale_reported_at", sa.Float),  # reported as open past the age limit (no longer polled)
)

# revision 0005 (Exact Online): an API's call budget, shared by every task and worker (rate-limit headers, the
# reset times they announce, and the error answers counted against the vendor's errors-per-hour block)
rate_budgets = sa.Table(
    "ml_rate_budgets",
    metadata,
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

# revision 0006 (ShipStation): what a two-way fulfilment pipeline did with each record, one row per pipeline,
# kind (``item``: a product pushed by SKU, ``order``: an order booked into the ERP) and key (SKU / orderKey):
# missing SKUs and record errors are kept here with their reason, never dropped silently
fulfilment_records = sa.Table(
    "ml_fulfilment_records",
    metadata,
    sa.Column("pipeline_id", sa.String(250), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("record_key", sa.String(250), primary_key=True),
    sa.Column("state", sa.String(30), nullable=False),  # pushed | unchanged | missing_sku | draft | booked | error
    sa.Column("document", sa.String(100)),  # the ERP document number / id it became
    sa.Column("detail", sa.Text),  # the reason of an error, or the tracking number booked
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# revision 0007 (throughput): the calls each running task has in flight against one API account, so that every
# lane, DAG and worker sharing the account stays within one in-flight budget (``ledger/in_flight.py``). One row
# per (api, holder); the row with holder "" is the lock anchor of its api (no slots, never expires). A holder
# renews its row while it works; a row whose holder died expires at ``expires_at`` (epoch seconds).
in_flight = sa.Table(
    "ml_in_flight",
    metadata,
    sa.Column("api", sa.String(250), primary_key=True),
    sa.Column("holder", sa.String(250), primary_key=True),
    sa.Column("slots", sa.Integer, nullable=False, server_default="0"),
    sa.Column("expires_at", sa.Float),
)
