"""Tracking: carrier tracking events (deduplicated), package status, and push-tracking subscriptions.

Events arrive from polling and from carrier webhooks alike; each is stored once (the dedupe key is tracking
number, time and code). Subscriptions record which tracking numbers a carrier pushes updates for, and until when.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase
from ml_connector.models import TrackingEvent


class TrackingMixin(LedgerBase):
    """Rows of ``ml_tracking_events``, the status of ``ml_packages`` and the subscription rows."""

    def add_tracking_events(self, events: Iterable[TrackingEvent], *, source: str) -> list[TrackingEvent]:
        """Store events, dropping ones already stored; returns the new ones."""
        new: list[TrackingEvent] = []
        with self.write() as conn:
            for event in events:
                key = f"{event.tracking_number}|{event.occurred_at.isoformat()}|{event.code or event.status.value}"
                result = conn.execute(self._insert(schema.tracking_events).values(
                    tracking_number=event.tracking_number, dedupe_key=key[:200], status=event.status.value,
                    code=event.code, description=event.description, occurred_at=event.occurred_at.isoformat(),
                    location=event.location, source=source,
                ).on_conflict_do_nothing(index_elements=["dedupe_key"]))
                if result.rowcount == 1:
                    new.append(event)
        return new

    def tracking_events(self, tracking_number: str) -> list[dict[str, Any]]:
        """Stored events of one package, newest first."""
        t = schema.tracking_events
        with self.read() as conn:
            rows = conn.execute(sa.select(t).where(t.c.tracking_number == tracking_number)
                                .order_by(t.c.occurred_at.desc())).mappings().all()
        return [dict(r) for r in rows]

    def set_package_status(self, tracking_number: str, status: str, delivered_at: str | None = None) -> None:
        t = schema.packages
        with self.write() as conn:
            conn.execute(t.update().where(t.c.tracking_number == tracking_number)
                         .values(status=status, delivered_at=delivered_at))

    # -- push-tracking subscriptions ----------------------------------------------------------------------

    def subscriptions_due(self, tracking_numbers: Iterable[str], *, now: float | None = None,
                          renew_before_seconds: float = 2 * 86400) -> list[str]:
        """Tracking numbers with no subscription, or one that expires within ``renew_before_seconds``."""
        now = time.time() if now is None else now
        numbers = list(tracking_numbers)
        t = schema.track_alert_subscriptions
        with self.read() as conn:
            rows = conn.execute(sa.select(t.c.tracking_number, t.c.expires_at)
                                .where(t.c.tracking_number.in_(numbers))).all()
        fresh = {n for n, exp in rows if exp - renew_before_seconds > now}
        return [n for n in numbers if n not in fresh]

    def record_subscriptions(self, tracking_numbers: Iterable[str], *, pipeline: str, expires_at: float,
                             status: str = "active") -> None:
        """Record (or renew) subscriptions valid until ``expires_at`` (epoch seconds)."""
        t = schema.track_alert_subscriptions
        now = time.time()
        with self.write() as conn:
            for number in tracking_numbers:
                stmt = self._insert(t).values(tracking_number=number, pipeline=pipeline, subscribed_at=now,
                                              expires_at=expires_at, status=status)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["tracking_number"],
                    set_={"subscribed_at": now, "expires_at": expires_at, "status": status}))
