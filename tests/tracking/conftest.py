"""Helpers for the tracking tests: labelled ledger rows of any age, a fake carrier that counts its calls, a fake ERP
that records what it was told, and a poll_tracking operator wired to them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from tests.dags.conftest import airflow_db, pipeline_env  # noqa: F401 - fixtures of the end-to-end test

from ml_connector.carriers.protocol import Carrier, SubscriptionOutcome
from ml_connector.errors import RecordError, RetryableError
from ml_connector.ledger import Ledger, ShipmentState, schema
from ml_connector.models import (
    Address,
    Order,
    Package,
    ShipmentResult,
    TrackingEvent,
    TrackingResult,
    TrackingStatus,
)
from ml_connector.operators.tracking import PollTrackingOperator
from ml_connector.settings import PipelineSettings

PIPELINE = "bc_ups"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()


def number(i: int) -> str:
    return f"1ZTEST{i:012d}"


def make_order(i: int) -> Order:
    return Order(erp="business_central", erp_id=f"guid-{i}", number=f"SO-{i:05d}", ship_method="GROUND",
                 ship_to=Address(name="Happy Dog", lines=["123 Main St"], city="New York", state="NY",
                                 postal_code="10001", country="US"), packages=[Package(weight=Decimal("5"))])


def labelled(ledger: Ledger, count: int, *, age_hours: float = 48, start: int = 0,
             state: ShipmentState = ShipmentState.WRITTEN_BACK, now: float = NOW) -> list[str]:
    """``count`` orders labelled ``age_hours`` before ``now`` (one package each), in ``state``."""
    numbers = []
    for i in range(start, start + count):
        row, _ = ledger.register_order(PIPELINE, make_order(i))
        ledger.record_label(row.id, ShipmentResult(shipment_id=f"S{i}", tracking_numbers=[number(i)]),
                            label_paths={}, adopted=True)
        if state is not ShipmentState.LABELLED:
            ledger.transition(row.id, state, step="writeback")
        numbers.append(number(i))
    born = datetime.fromtimestamp(now - age_hours * 3600, UTC).replace(tzinfo=None)
    with ledger.write() as conn:
        conn.execute(schema.packages.update().where(schema.packages.c.tracking_number.in_(numbers))
                     .values(created_at=born))
    return numbers


def event(tracking_number: str, status: TrackingStatus, at: float, code: str) -> TrackingEvent:
    return TrackingEvent(tracking_number=tracking_number, status=status, code=code, description=status.value,
                         occurred_at=datetime.fromtimestamp(at, UTC), location="Louisville, KY, US")


class FakeCarrier(Carrier):
    """Counts track calls; answers every package with ``statuses[number]`` (default in transit)."""

    name = "fake"
    push_source = "fake"
    push_lifetime_seconds = 14 * 86400.0

    def __init__(self) -> None:
        self.track_calls: list[str] = []
        self.statuses: dict[str, TrackingStatus] = {}
        self.subscribe_calls: list[list[str]] = []
        self.fail_subscription: set[str] = set()
        self.invalid: set[str] = set()
        self.quantum_view: list[TrackingResult] = []
        self.pull_calls: list[str] = []
        self.rotated = False

    def plan(self, order):  # pragma: no cover - not used by tracking
        raise NotImplementedError

    def validate_address(self, address):  # pragma: no cover
        raise NotImplementedError

    def buy_label(self, order, plan, *, shipper, residential):  # pragma: no cover
        raise NotImplementedError

    def find_labels(self, plan):  # pragma: no cover
        raise NotImplementedError

    def void(self, shipment_id, tracking_numbers=()):  # pragma: no cover
        raise NotImplementedError

    def track(self, tracking_number: str) -> TrackingResult:
        self.track_calls.append(tracking_number)
        status = self.statuses.get(tracking_number, TrackingStatus.IN_TRANSIT)
        if status is TrackingStatus.NOT_FOUND:
            return TrackingResult(tracking_number=tracking_number, status=status)
        if tracking_number in self.fail_track:
            raise RetryableError("UPS answered 503")
        at = NOW - 3600
        return TrackingResult(tracking_number=tracking_number, status=status,
                              events=[event(tracking_number, status, at, "DP")],
                              delivered_at=datetime.fromtimestamp(at, UTC) if status is TrackingStatus.DELIVERED
                              else None, received_by="JANE DOE" if status is TrackingStatus.DELIVERED else None)

    fail_track: set[str] = set()

    def prepare_push(self, style: str, store: Any, *, previous_valid_until: float) -> bool:
        return self.rotated

    def subscribe_tracking(self, tracking_numbers, *, style, url=None, kind="standard") -> SubscriptionOutcome:
        numbers = list(tracking_numbers)
        self.subscribe_calls.append(numbers)
        outcome = SubscriptionOutcome()
        for n in numbers:
            if n in self.invalid:
                outcome.invalid.append(n)
            elif n in self.fail_subscription:
                outcome.failed[n] = "UPS answered 503"
            else:
                outcome.accepted.append(n)
        return outcome

    def read_pushed(self, payload: str) -> TrackingResult:
        body = json.loads(payload)
        if "status" not in body:
            raise RecordError("no status", field="status")
        status = TrackingStatus(body["status"])
        return TrackingResult(tracking_number=body["number"], status=status,
                              events=[event(body["number"], status, body["at"], body.get("code", "X"))],
                              delivered_at=datetime.fromtimestamp(body["at"], UTC)
                              if status is TrackingStatus.DELIVERED else None,
                              received_by=body.get("received_by"))

    def pull_tracking(self, subscription: str) -> list[TrackingResult]:
        self.pull_calls.append(subscription)
        results, self.quantum_view = self.quantum_view, []
        return results


class FakeErp:
    """Records every write_status."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str, str | None, str | None]] = []

    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        self.statuses.append((order.number, tracking.status.value,
                              tracking.delivered_at.isoformat() if tracking.delivered_at else None,
                              tracking.received_by))

    def close(self) -> None:
        pass


def poll_operator(ledger: Ledger, carrier: FakeCarrier, erp: FakeErp, *, now: float = NOW,
                  **settings: Any) -> PollTrackingOperator:
    op = PollTrackingOperator(task_id="poll_tracking", pipeline_id=PIPELINE,
                              settings=PipelineSettings(erp="business_central", **settings))
    op._ledger = ledger
    op.carrier = lambda: carrier  # type: ignore[method-assign]
    op.source = lambda: erp  # type: ignore[method-assign]
    op.clock = lambda: now  # type: ignore[method-assign]
    return op


def run(op: PollTrackingOperator) -> dict[str, Any]:
    context = {"ti": SimpleNamespace(task_id="poll_tracking", map_index=-1, try_number=1), "run_id": "manual__t"}
    return op.execute(context)


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def set_subscribed(ledger: Ledger, numbers: list[str], *, days_ago: float, now: float = NOW,
                   status: str = "active") -> None:
    subscribed = now - days_ago * 86400
    ledger.record_subscriptions(numbers, pipeline=PIPELINE, expires_at=subscribed + 14 * 86400, style="v1",
                                now=subscribed)
    if status != "active":
        ledger.mark_subscriptions(numbers, status=status)


__all__ = ["NOW", "PIPELINE", "FakeCarrier", "FakeErp", "labelled", "number", "poll_operator", "run",
           "set_subscribed", "sa", "time", "timedelta"]
