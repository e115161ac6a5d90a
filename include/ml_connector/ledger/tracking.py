"""Tracking: carrier tracking events (deduplicated), package status, and push-tracking subscriptions.

Events arrive from polling, carrier webhooks and Quantum View alike; each is stored once (the dedupe key is
tracking number, time in UTC and code, so the same scan seen by two sources is one row). ``ml_package_tracking``
keeps each package's canonical status and when each source last spoke. Subscriptions record which tracking
numbers a carrier pushes updates for, until when, and whether Quantum View took over after a failed renewal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase
from ml_connector.models import TrackingEvent, TrackingStatus

#: Statuses after which a package is never tracked again.
FINAL_STATUSES = frozenset({TrackingStatus.DELIVERED.value, TrackingStatus.VOIDED.value,
                            TrackingStatus.RETURNED.value})


def event_key(event: TrackingEvent) -> str:
    """The dedupe key of one scan: number, UTC time, code (or status when the source gives no code)."""
    moment = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{event.tracking_number.strip().upper()}|{moment}|{event.code or event.status.value}"[:200]


@dataclass(frozen=True)
class PackageTracking:
    """One row of ``ml_package_tracking``."""

    tracking_number: str
    status: str
    last_event_at: float | None = None
    last_source: str | None = None
    pushed_at: float | None = None
    polled_at: float | None = None
    delivered_at: str | None = None
    received_by: str | None = None
    location: str | None = None
    stale_reported_at: float | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Subscription:
    """One row of ``ml_track_alert_subscriptions``."""

    tracking_number: str
    pipeline: str | None
    subscribed_at: float
    expires_at: float
    status: str
    style: str | None = None
    error: str | None = None
    quantum_view: bool = False

    def active(self, now: float) -> bool:
        return self.status == "active" and self.expires_at > now


def _utc_epoch(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


class TrackingMixin(LedgerBase):
    """Rows of ``ml_tracking_events``, the status of ``ml_packages`` and the subscription rows."""

    def add_tracking_events(self, events: Iterable[TrackingEvent], *, source: str) -> list[TrackingEvent]:
        """Store events, dropping ones already stored; returns the new ones."""
        with self.write() as conn:
            return self._insert_events(conn, events, source)

    def _insert_events(self, conn: Any, events: Iterable[TrackingEvent], source: str) -> list[TrackingEvent]:
        new: list[TrackingEvent] = []
        for event in events:
            result = conn.execute(self._insert(schema.tracking_events).values(
                tracking_number=event.tracking_number, dedupe_key=event_key(event), status=event.status.value,
                code=event.code, description=event.description,
                occurred_at=event.occurred_at.astimezone(UTC).isoformat(),
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

    # -- per-package tracking state ------------------------------------------------------------------------

    def package_tracking(self, tracking_numbers: Iterable[str]) -> dict[str, PackageTracking]:
        """The tracking rows of these packages (packages never seen by any source are absent)."""
        numbers = list(tracking_numbers)
        t = schema.package_tracking
        found: dict[str, PackageTracking] = {}
        with self.read() as conn:
            for start in range(0, len(numbers), 500):
                rows = conn.execute(sa.select(t).where(t.c.tracking_number.in_(numbers[start:start + 500])))
                for row in rows.mappings():
                    found[row["tracking_number"]] = PackageTracking(**row)
        return found

    def record_package_status(self, tracking_number: str, status: TrackingStatus | str, *, source: str,
                              event_at: datetime | None = None, delivered_at: str | None = None,
                              received_by: str | None = None, location: str | None = None,
                              events: Iterable[TrackingEvent] = (), now: float | None = None) -> bool:
        """Store a package's status (and ``events``, in the same transaction) as one source reported it; returns
        whether the stored status changed.

        Sources race and webhooks arrive out of order: an older event never overwrites a newer one, and a final
        status (delivered, voided, returned) is never replaced by a non-final one. ``pushed_at`` is set for
        pushed sources (anything but ``poll``), ``polled_at`` for ``poll``.
        """
        now = time.time() if now is None else now
        status = TrackingStatus(status).value
        event_epoch = _utc_epoch(event_at) if event_at is not None else None
        t = schema.package_tracking
        with self.write() as conn:
            self._insert_events(conn, events, source)
            # a placeholder first, so that two workers seeing a new package never collide on the insert
            conn.execute(self._insert(t).values(tracking_number=tracking_number, status="unknown")
                         .on_conflict_do_nothing(index_elements=["tracking_number"]))
            current = conn.execute(self._lock(sa.select(t).where(t.c.tracking_number == tracking_number))
                                   ).mappings().one()
            older = (event_epoch is not None and current["last_event_at"] is not None
                     and event_epoch < current["last_event_at"])
            keep = status not in FINAL_STATUSES and (current["status"] in FINAL_STATUSES or older)
            values: dict[str, Any] = {"pushed_at": now} if source != "poll" else {"polled_at": now}
            if not keep:
                values.update(status=status, last_source=source, location=location or current["location"],
                              last_event_at=max([e for e in (event_epoch, current["last_event_at"]) if e is not None],
                                                default=None))
            values["delivered_at"] = current["delivered_at"] or delivered_at  # the first known delivery time stays
            values["received_by"] = received_by or current["received_by"]
            conn.execute(t.update().where(t.c.tracking_number == tracking_number).values(**values))
            changed = not keep and status != current["status"]
            p = schema.packages
            conn.execute(p.update().where(p.c.tracking_number == tracking_number).values(
                status=status if not keep else current["status"], delivered_at=values["delivered_at"]))
        return changed

    def mark_polled(self, tracking_numbers: Iterable[str], *, now: float | None = None) -> None:
        """Record a Track API call for packages whose answer held nothing new."""
        now = time.time() if now is None else now
        t = schema.package_tracking
        with self.write() as conn:
            for number in tracking_numbers:
                updated = conn.execute(t.update().where(t.c.tracking_number == number).values(polled_at=now))
                if updated.rowcount == 0:
                    conn.execute(self._insert(t).values(tracking_number=number, status="unknown", polled_at=now)
                                 .on_conflict_do_nothing(index_elements=["tracking_number"]))

    def mark_stale_reported(self, tracking_numbers: Iterable[str], *, now: float | None = None) -> None:
        """Remember that packages open past the age limit were reported (they are not polled again)."""
        now = time.time() if now is None else now
        t = schema.package_tracking
        with self.write() as conn:
            for number in tracking_numbers:
                updated = conn.execute(t.update().where(t.c.tracking_number == number)
                                       .values(stale_reported_at=now))
                if updated.rowcount == 0:
                    conn.execute(self._insert(t).values(tracking_number=number, status="unknown",
                                                        stale_reported_at=now)
                                 .on_conflict_do_nothing(index_elements=["tracking_number"]))

    def package_labelled_at(self, tracking_numbers: Iterable[str]) -> dict[str, float]:
        """When each package's label was recorded (``ml_packages.created_at``, epoch seconds)."""
        numbers = list(tracking_numbers)
        p = schema.packages
        found: dict[str, float] = {}
        with self.read() as conn:
            for start in range(0, len(numbers), 500):
                rows = conn.execute(sa.select(p.c.tracking_number, p.c.created_at)
                                    .where(p.c.tracking_number.in_(numbers[start:start + 500])))
                for number, created in rows:
                    if isinstance(created, str):
                        created = datetime.fromisoformat(created)
                    if created.tzinfo is None:  # SQLite's CURRENT_TIMESTAMP is UTC without an offset
                        created = created.replace(tzinfo=UTC)
                    found[number] = created.timestamp()
        return found

    # -- push-tracking subscriptions ----------------------------------------------------------------------

    def subscriptions(self, tracking_numbers: Iterable[str]) -> dict[str, Subscription]:
        """The subscription rows of these numbers (numbers never subscribed are absent)."""
        numbers = list(tracking_numbers)
        t = schema.track_alert_subscriptions
        found: dict[str, Subscription] = {}
        with self.read() as conn:
            for start in range(0, len(numbers), 500):
                rows = conn.execute(sa.select(t).where(t.c.tracking_number.in_(numbers[start:start + 500])))
                for row in rows.mappings():
                    found[row["tracking_number"]] = Subscription(**row)
        return found

    def mark_subscriptions(self, tracking_numbers: Iterable[str], *, status: str, pipeline: str | None = None,
                           error: str | None = None, quantum_view: bool | None = None,
                           style: str | None = None, now: float | None = None) -> None:
        """Set the status (and error, Quantum View fallback) of subscription rows, creating missing ones."""
        now = time.time() if now is None else now
        t = schema.track_alert_subscriptions
        values: dict[str, Any] = {"status": status, "error": error}
        if quantum_view is not None:
            values["quantum_view"] = quantum_view
        with self.write() as conn:
            for number in tracking_numbers:
                updated = conn.execute(t.update().where(t.c.tracking_number == number).values(**values))
                if updated.rowcount == 0:
                    conn.execute(self._insert(t).values(
                        tracking_number=number, pipeline=pipeline, subscribed_at=now, expires_at=now,
                        style=style, **values).on_conflict_do_nothing(index_elements=["tracking_number"]))


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
                             status: str = "active", style: str | None = None,
                             now: float | None = None) -> None:
        """Record (or renew) subscriptions valid until ``expires_at`` (epoch seconds). A renewal clears the
        error and the Quantum View fallback."""
        t = schema.track_alert_subscriptions
        now = time.time() if now is None else now
        with self.write() as conn:
            for number in tracking_numbers:
                stmt = self._insert(t).values(tracking_number=number, pipeline=pipeline, subscribed_at=now,
                                              expires_at=expires_at, status=status, style=style)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["tracking_number"],
                    set_={"subscribed_at": now, "expires_at": expires_at, "status": status, "style": style,
                          "error": None, "quantum_view": False}))
