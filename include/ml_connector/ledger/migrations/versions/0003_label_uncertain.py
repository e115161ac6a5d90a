"""Shipments: the ``label_uncertain`` state's bookkeeping and the life-long fact that a purchase was attempted.

``label_requested_at``: when a label purchase was first attempted for the order. Set once and never cleared, so
that every later purchase (after a quarantine, a re-extraction or a replay) first looks the order up by
reference. Rows that reached ``label_requested`` before this revision get it from their audit trail (the first
move to ``label_requested``), or from ``updated_at`` when they are labelled and the trail has no such row.
``uncertain_since``/``lookup_attempts``/``next_lookup_at``/``lookup_until``: an order whose purchase got no
clear answer is looked up by reference with backoff until ``lookup_until`` (the settle window).
``rebuy_at``: a person decided to buy anew; a label of the abandoned attempt that turns up later is voided.
The state column already holds any state name (``label_uncertain`` is 15 characters).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: States that can only be reached through ``label_requested`` (frozen here: revisions never import schema.py).
_PAST_LABEL_REQUESTED = ("label_requested", "labelled", "written_back", "in_transit", "delivered", "exception",
                         "voided")


def upgrade() -> None:
    # plain ADD COLUMN (nullable, or NOT NULL with a default): no table rebuild on SQLite
    op.add_column("ml_shipments", sa.Column("label_requested_at", sa.DateTime(timezone=True)))
    op.add_column("ml_shipments", sa.Column("uncertain_since", sa.Float))
    op.add_column("ml_shipments", sa.Column("lookup_attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("ml_shipments", sa.Column("next_lookup_at", sa.Float))
    op.add_column("ml_shipments", sa.Column("lookup_until", sa.Float))
    op.add_column("ml_shipments", sa.Column("rebuy_at", sa.Float))

    shipments = sa.table("ml_shipments", sa.column("id", sa.Integer), sa.column("state", sa.String),
                         sa.column("updated_at", sa.DateTime(timezone=True)),
                         sa.column("label_requested_at", sa.DateTime(timezone=True)))
    audit = sa.table("ml_audit_log", sa.column("shipment_pk", sa.Integer), sa.column("to_state", sa.String),
                     sa.column("at", sa.DateTime(timezone=True)))
    first_request = (sa.select(sa.func.min(audit.c.at))
                     .where(audit.c.shipment_pk == shipments.c.id, audit.c.to_state == "label_requested")
                     .scalar_subquery())
    # a quarantined (or re-extracted) order whose trail shows a purchase attempt keeps that fact too
    op.execute(shipments.update().values(label_requested_at=sa.func.coalesce(
        first_request,
        sa.case((shipments.c.state.in_(_PAST_LABEL_REQUESTED), shipments.c.updated_at), else_=None))))


def downgrade() -> None:
    # the older code knows no label_uncertain: label_requested is its "look up before buying" state
    op.execute(sa.text("UPDATE ml_shipments SET state = 'label_requested' WHERE state = 'label_uncertain'"))
    with op.batch_alter_table("ml_shipments") as batch:
        for column in ("rebuy_at", "lookup_until", "next_lookup_at", "lookup_attempts", "uncertain_since",
                       "label_requested_at"):
            batch.drop_column(column)
