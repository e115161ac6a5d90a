"""``poll_tracking``: keep the ERP's delivery status current, at the lowest cost in carrier calls.

One run does, in order:

1. **inbox**: pushed events (Track Alert webhooks, stored by the webhook plugin) become tracking events and
   package statuses (:func:`ingest_inbox`);
2. **Quantum View**: when configured, or for numbers whose Track Alert renewal failed, unread Quantum View
   events are read the same way;
3. **subscriptions**: with ``track_alert`` on, newly labelled packages are subscribed, and subscriptions older
   than ``track_alert_renew_after_days`` (12 by default, of UPS's 14) are renewed while the package is open;
   a package that reached a final status is not renewed; a failed (re)subscription hands the number to
   Quantum View;
4. **polling**: only open packages that no push covers (no pushed event in the last
   ``tracking_push_fresh_hours``, no active subscription; a subscribed package silent that long is polled once
   per that period), at least ``tracking_min_age_minutes`` old, not polled in the last
   ``tracking_poll_interval_minutes``; delivered, voided and returned packages are never polled again;
   packages open for longer than ``tracking_max_age_days`` are reported once and no longer polled;
5. **status**: the ERP is written (``OrderSource.write_status``) only when the shipment's status changed.

Every event is stored once, whichever source saw it first (ledger ``event_key``: number, UTC time, code).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from ml_connector.carriers.protocol import Carrier
from ml_connector.errors import ConnectorError, PermanentError, RecordError, RetryableError
from ml_connector.ledger import Ledger, ShipmentRow, ShipmentState
from ml_connector.ledger.tracking import PackageTracking, Subscription
from ml_connector.models import TrackingEvent, TrackingResult, TrackingStatus
from ml_connector.operators.base import PipelineOperator
from ml_connector.operators.in_flight import work_within
from ml_connector.settings import PipelineSettings

#: Tracking status -> ledger state. Statuses not listed (label created, not found, unknown) change nothing.
STATE_FOR_STATUS = {
    TrackingStatus.PICKED_UP: ShipmentState.IN_TRANSIT,
    TrackingStatus.IN_TRANSIT: ShipmentState.IN_TRANSIT,
    TrackingStatus.OUT_FOR_DELIVERY: ShipmentState.IN_TRANSIT,
    TrackingStatus.DELIVERED: ShipmentState.DELIVERED,
    TrackingStatus.EXCEPTION: ShipmentState.EXCEPTION,
    TrackingStatus.VOIDED: ShipmentState.VOIDED,
    TrackingStatus.RETURNED: ShipmentState.RETURNED,
}
DAY = 86400.0


# -- stored results -------------------------------------------------------------------------------------------

def store_result(ledger: Ledger, result: TrackingResult, *, source: str, now: float | None = None) -> bool:
    """Store one package's events and status as ``source`` reported them; True when its status changed."""
    newest = max((e.occurred_at for e in result.events), default=None)
    if result.status in (TrackingStatus.NOT_FOUND, TrackingStatus.UNKNOWN):
        ledger.add_tracking_events(result.events, source=source)
        if source == "poll":
            ledger.mark_polled([result.tracking_number], now=now)
        return False
    location = next((e.location for e in sorted(result.events, key=lambda e: e.occurred_at, reverse=True)
                     if e.location), None)
    return ledger.record_package_status(
        result.tracking_number, result.status, source=source, event_at=newest, now=now,
        delivered_at=result.delivered_at.isoformat() if result.delivered_at else None,
        received_by=result.received_by, location=location, events=result.events)


def ingest_inbox(ledger: Ledger, carrier: Carrier, *, limit: int = 5000, now: float | None = None,
                 log: Any = None) -> dict[str, int]:
    """Turn the carrier's pending webhook inbox rows into stored events and statuses (every pipeline's packages:
    events belong to tracking numbers). A row that cannot be read is marked done with its error (nothing is
    retried forever); counts ``{"pushed": n, "bad": n}``."""
    counts = {"pushed": 0, "bad": 0}
    if not carrier.push_source:
        return counts
    for row in ledger.inbox_pending(carrier.push_source, limit=limit):
        try:
            result = carrier.read_pushed(row["payload"])
        except (RecordError, NotImplementedError) as exc:
            counts["bad"] += 1
            ledger.inbox_done(row["id"], error=str(exc)[:500])
            if log is not None:
                log.warning("webhook inbox row %s is not a tracking event: %s", row["id"], exc)
            continue
        store_result(ledger, result, source="webhook", now=now)
        ledger.inbox_done(row["id"])
        counts["pushed"] += 1
    ledger.inbox_prune(carrier.push_source)
    return counts


def stored_result(ledger: Ledger, number: str, tracking: PackageTracking | None, *,
                  with_events: bool = True) -> TrackingResult | None:
    """A package's stored status as a :class:`TrackingResult` (what ``write_status`` is given)."""
    if tracking is None or tracking.status in ("unknown", TrackingStatus.NOT_FOUND.value):
        return None
    events = []
    for event in ledger.tracking_events(number) if with_events else []:
        try:
            events.append(TrackingEvent(tracking_number=number, status=event["status"], code=event["code"],
                                        description=event["description"],
                                        occurred_at=datetime.fromisoformat(event["occurred_at"]),
                                        location=event["location"]))
        except ValueError:
            continue
    delivered = datetime.fromisoformat(tracking.delivered_at) if tracking.delivered_at else None
    return TrackingResult(tracking_number=number, status=TrackingStatus(tracking.status), events=events,
                          delivered_at=delivered, received_by=tracking.received_by)


# -- which packages cost a Track API call ------------------------------------------------------------------------

@dataclass
class PollPlan:
    """What one run does with each open package: poll it, or why not."""

    poll: list[str] = field(default_factory=list)
    too_old: list[str] = field(default_factory=list)  # open past tracking_max_age_days: reported, not polled
    skipped: dict[str, int] = field(default_factory=lambda: {"final": 0, "too_new": 0, "pushed": 0,
                                                            "recent": 0, "reported": 0})


def plan_polls(numbers: Iterable[str], *, settings: PipelineSettings, now: float, labelled_at: dict[str, float],
               tracking: dict[str, PackageTracking], subscriptions: dict[str, Subscription]) -> PollPlan:
    """Decide per package (pure): final -> never; younger than ``tracking_min_age_minutes`` -> not yet; older
    than ``tracking_max_age_days`` -> reported once; a pushed event (webhook, Quantum View) fresher than
    ``tracking_push_fresh_hours`` -> the push covers it; an active subscription -> covered too, unless the package
    has been silent that long (UPS drops events it cannot deliver): then one call per ``tracking_push_fresh_hours``;
    polled within ``tracking_poll_interval_minutes`` -> later; else poll."""
    plan = PollPlan()
    for number in numbers:
        state = tracking.get(number)
        if state is not None and state.final:
            plan.skipped["final"] += 1
            continue
        born = labelled_at.get(number, now)
        if now - born < settings.tracking_min_age_minutes * 60:
            plan.skipped["too_new"] += 1
            continue
        if now - born > settings.tracking_max_age_days * DAY:
            if state is None or state.stale_reported_at is None:
                plan.too_old.append(number)
            else:
                plan.skipped["reported"] += 1
            continue
        fresh = settings.tracking_push_fresh_hours * 3600
        subscription = subscriptions.get(number)
        if state is not None and state.pushed_at is not None and now - state.pushed_at < fresh:
            plan.skipped["pushed"] += 1  # a webhook or Quantum View spoke lately
            continue
        interval = settings.tracking_poll_interval_minutes * 60
        if subscription is not None and subscription.active(now):
            if now - subscription.subscribed_at < fresh or now - born < fresh:
                plan.skipped["pushed"] += 1  # subscribed: its events are on their way
                continue
            # subscribed but silent for a day: UPS drops events it cannot deliver, so look once a day
            interval = max(interval, fresh)
        if state is not None and state.polled_at is not None and now - state.polled_at < interval:
            plan.skipped["recent"] += 1
            continue
        plan.poll.append(number)
    return plan


def renewals_due(numbers: Iterable[str], *, settings: PipelineSettings, now: float,
                 tracking: dict[str, PackageTracking], subscriptions: dict[str, Subscription],
                 rotated: bool = False) -> tuple[list[str], list[str]]:
    """``(due, ended)``: open numbers never subscribed, subscribed more than ``track_alert_renew_after_days``
    ago, failed before (tried again each run; Quantum View covers them meanwhile) or, after a credential
    rotation, every active one; ``ended``: final packages whose subscription is still marked active."""
    due, ended = [], []
    renew_after = settings.track_alert_renew_after_days * DAY
    for number in numbers:
        subscription, state = subscriptions.get(number), tracking.get(number)
        if state is not None and state.final:
            if subscription is not None and subscription.status == "active":
                ended.append(number)
            continue
        if subscription is None or subscription.status == "failed" or (
                subscription.status in ("active", "ended") and (
                    rotated or now - subscription.subscribed_at >= renew_after or subscription.expires_at <= now)):
            due.append(number)
    return due, ended


# -- the operator ---------------------------------------------------------------------------------------------

class PollTrackingOperator(PipelineOperator):
    """Keeps the pipeline's delivery statuses current (see the module docstring). Runs after the lanes whatever
    they did (``trigger_rule=all_done``).

    A row that is labelled but not yet written back only collects scans: its status moves on the ERP once the
    write-back has happened, so a label is never reported as "in transit" on a document that lacks its 1Z.
    """

    ui_color = "#e8f8e3"

    #: epoch seconds now (tests move it)
    clock = staticmethod(time.time)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            return self._run(context)
        finally:
            self.close_sources()

    def _run(self, context: Any) -> dict[str, Any]:
        if not self.settings.track:
            raise AirflowSkipException("tracking is off for this pipeline (track: false)")
        ledger, now = self.ledger, self.clock()
        carrier = self.carrier()
        counts: dict[str, Any] = dict(ingest_inbox(ledger, carrier, now=now, log=self.log))
        rows = ledger.tracked(self.pipeline_id)
        if not rows and not counts["pushed"]:
            raise AirflowSkipException("no open packages to track")
        actor = self.actor(context)
        numbers = [n for row in rows for n in row.tracking_numbers]
        tracking = ledger.package_tracking(numbers)
        subscriptions = ledger.subscriptions(numbers)

        counts["quantum_view"] = self._quantum_view(carrier, subscriptions, now)
        if counts["quantum_view"]:
            tracking = ledger.package_tracking(numbers)
        if self.settings.track_alert != "off" and carrier.push_source:
            counts.update(self._subscribe(carrier, numbers, tracking, subscriptions, now))
            subscriptions = ledger.subscriptions(numbers)

        counts["proof_of_delivery"] = self._proof_of_delivery(carrier, numbers, ledger.package_tracking(numbers), now)
        plan = plan_polls(numbers, settings=self.settings, now=now, labelled_at=ledger.package_labelled_at(numbers),
                          tracking=tracking, subscriptions=subscriptions)
        counts["skipped"] = plan.skipped
        counts["too_old"] = self._report_too_old(rows, plan.too_old, now)
        polled, errors = self._poll(carrier, plan.poll, now)
        counts.update(polled=polled, track_errors=len(errors))

        tracking = ledger.package_tracking(numbers)
        changes, failures = self._write_statuses(rows, tracking, actor)
        counts["status_changes"] = changes
        self.log.info("tracking: %s", counts)
        problems = errors + failures
        if problems and len(problems) >= max(1, len(plan.poll)) and not changes and not polled:
            raise RetryableError("tracking failed: " + "; ".join(problems[:5]))
        return counts

    # -- Quantum View -------------------------------------------------------------------------------------
    def _quantum_view(self, carrier: Carrier, subscriptions: dict[str, Subscription], now: float) -> int:
        name = self.settings.quantum_view_subscription
        if name is None and any(s.quantum_view for s in subscriptions.values()):
            name = self.settings.quantum_view_fallback_subscription
            if name is None:
                self.log.warning("Track Alert failed for some packages and no quantum_view_fallback_subscription "
                                 "is set: they are polled instead")
        if not name:
            return 0
        try:
            results = self.shared_budget("carrier").call(lambda: carrier.pull_tracking(name))
        except ConnectorError as exc:
            self.log.warning("Quantum View subscription %s could not be read: %s", name, exc)
            return 0
        for result in results:
            store_result(self.ledger, result, source="quantum_view", now=now)
        return len(results)

    # -- Track Alert ----------------------------------------------------------------------------------------
    def _subscribe(self, carrier: Carrier, numbers: list[str], tracking: dict[str, PackageTracking],
                   subscriptions: dict[str, Subscription], now: float) -> dict[str, int]:
        lifetime = carrier.push_lifetime_seconds or 14 * DAY
        style = self.settings.track_alert
        from ml_connector.secrets import (
            SecretStore,  # cryptography: imported when used, not at DAG parse time
        )

        rotated = carrier.prepare_push(style, SecretStore(self.ledger), previous_valid_until=now + lifetime)
        if rotated:
            self.log.info("the Track Alert credential changed: every open subscription is renewed with it")
        due, ended = renewals_due(numbers, settings=self.settings, now=now, tracking=tracking,
                                  subscriptions=subscriptions, rotated=rotated)
        if ended:
            self.ledger.mark_subscriptions(ended, status="ended")
        if not due:
            return {"subscribed": 0, "subscribe_failed": 0}
        outcome = self.shared_budget("carrier").call(lambda: carrier.subscribe_tracking(
            due, style=style, url=self.settings.track_alert_url, kind=self.settings.track_alert_kind))
        if outcome.accepted:
            self.ledger.record_subscriptions(outcome.accepted, pipeline=self.pipeline_id, expires_at=now + lifetime,
                                             style=style, now=now)
        if outcome.invalid:
            self.log.warning("the carrier refused to subscribe %d number(s): %s", len(outcome.invalid),
                             ", ".join(outcome.invalid[:10]))
            self.ledger.mark_subscriptions(outcome.invalid, status="invalid", pipeline=self.pipeline_id,
                                           style=style, error="refused by the carrier", now=now)
        for number, reason in outcome.failed.items():
            self.ledger.mark_subscriptions([number], status="failed", pipeline=self.pipeline_id, style=style,
                                           error=reason[:500], quantum_view=True, now=now)
        if outcome.failed:
            self.log.warning("subscribing %d number(s) failed; Quantum View (or polling) covers them until a "
                             "later run succeeds: %s", len(outcome.failed), next(iter(outcome.failed.values())))
        return {"subscribed": len(outcome.accepted), "subscribe_failed": len(outcome.failed)}

    # -- the Track API --------------------------------------------------------------------------------------
    def _poll(self, carrier: Carrier, numbers: list[str], now: float) -> tuple[int, list[str]]:
        if not numbers:
            return 0, []

        def follow(number: str) -> tuple[str, ConnectorError | None]:
            # the answer is stored by the thread that got it, overlapping the other calls' wait
            try:
                result = carrier.track(number)
            except ConnectorError as exc:
                return number, exc
            store_result(self.ledger, result, source="poll", now=now)
            return number, None

        errors: list[str] = []
        polled = 0
        for number, error in work_within(numbers, follow, threads=self.settings.api_budget,
                                         budget=self.shared_budget("carrier"), name="track"):
            if error is not None:
                if isinstance(error, PermanentError) and not isinstance(error, RecordError):
                    raise error  # configuration or credentials: the task fails, nothing else is tried
                errors.append(f"{number}: {error}")
                continue
            polled += 1
        return polled, errors

    def _proof_of_delivery(self, carrier: Carrier, numbers: list[str], tracking: dict[str, PackageTracking],
                           now: float) -> int:
        """A delivery pushed without who signed (Track Alert standard subscriptions carry no ``receivedBy``):
        one Track API call for that package, once, fetches the proof of delivery."""
        if not self.settings.tracking_proof_of_delivery:
            return 0
        wanted = [n for n in numbers if (t := tracking.get(n)) is not None and t.status == "delivered"
                  and not t.received_by and t.last_source != "poll" and t.polled_at is None]
        fetched, _errors = self._poll(carrier, wanted, now)
        return fetched

    def _report_too_old(self, rows: list[ShipmentRow], numbers: list[str], now: float) -> list[str]:
        if not numbers:
            return []
        wanted = set(numbers)
        orders = [row.order_number for row in rows if wanted & set(row.tracking_numbers)]
        self.log.warning("%d package(s) still open after %s days are no longer tracked; check them with the carrier: "
                         "%s", len(numbers), self.settings.tracking_max_age_days, ", ".join(orders[:20]))
        for row in rows:
            if wanted & set(row.tracking_numbers):
                self.ledger.audit(row, step="poll_tracking", outcome="stale",
                                  message=f"open for more than {self.settings.tracking_max_age_days} days: "
                                          "no longer tracked")
        self.ledger.mark_stale_reported(numbers, now=now)
        return orders

    # -- the ERP --------------------------------------------------------------------------------------------
    def _write_statuses(self, rows: list[ShipmentRow], tracking: dict[str, PackageTracking],
                        actor: str) -> tuple[int, list[str]]:
        """Write each changed status to the ERP and the ledger, as many at once as this task holds of the ERP
        account's in-flight budget (ERP writes are calls too: a thousand deliveries must not wait for each other)."""
        changed: list[tuple[ShipmentRow, TrackingResult, ShipmentState]] = []
        for row in rows:
            results = [r for r in (stored_result(self.ledger, n, tracking.get(n), with_events=False)
                                   for n in row.tracking_numbers) if r]
            lead = lead_status(results)
            target = STATE_FOR_STATUS.get(lead.status) if lead else None
            if target is None or lead is None or lead.status.value == row.tracking_status:
                continue  # nothing new for the ERP
            if row.state is ShipmentState.LABELLED and self.settings.writeback:
                continue  # wait for the write-back: the ERP must show the 1Z first
            changed.append((row, lead, target))
        if not changed:
            return 0, []
        erp = self.source() if self.settings.writeback else None

        def apply(change: tuple[ShipmentRow, TrackingResult, ShipmentState]) -> str | None:
            row, lead, target = change
            lead = stored_result(self.ledger, lead.tracking_number, tracking.get(lead.tracking_number)) or lead
            try:
                if erp is not None:
                    erp.write_status(row.order, lead)
                self.ledger.transition(
                    row.id, target, step="poll_tracking", actor=actor,
                    message=f"{lead.tracking_number}: {lead.status.value}"
                            + (f", delivered {lead.delivered_at.isoformat()}" if lead.delivered_at else "")
                            + (f", received by {lead.received_by}" if lead.received_by else ""),
                    tracking_status=lead.status.value,
                    delivered_at=lead.delivered_at.isoformat() if lead.delivered_at else None)
            except (RecordError, RetryableError) as exc:
                self.ledger.record_error(row.id, step="poll_tracking", error=exc, actor=actor)
                return f"{row.order_number}: {exc}"
            return None

        failures = [f for f in work_within(changed, apply, threads=self.settings.api_budget,
                                           budget=self.shared_budget("erp"), name="status") if f]
        return len(changed) - len(failures), failures


_PRIORITY = [TrackingStatus.EXCEPTION, TrackingStatus.PICKED_UP, TrackingStatus.IN_TRANSIT,
             TrackingStatus.OUT_FOR_DELIVERY, TrackingStatus.RETURNED, TrackingStatus.DELIVERED,
             TrackingStatus.VOIDED]


def lead_status(results: list[TrackingResult]) -> TrackingResult | None:
    """The package that speaks for a multi-package shipment: any exception first, then the least advanced
    (a shipment is delivered only when every package is)."""
    known = [r for r in results if r.status in _PRIORITY]
    if not known:
        return None
    return min(known, key=lambda r: _PRIORITY.index(r.status))

