"""Ledger behaviour on SQLite and PostgreSQL: state machine, claims, audit, tracking dedupe, inbox."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ml_connector.ledger import InvalidTransition, Ledger, ShipmentState
from ml_connector.models import (
    Address,
    Label,
    Money,
    Order,
    Package,
    ShipmentResult,
    TrackingEvent,
    TrackingStatus,
)


def make_order(number: str = "SO-1001", erp_id: str = "guid-1", modified: str = "2026-11-23T08:00:00Z") -> Order:
    return Order(
        erp="business_central", erp_id=erp_id, number=number, ship_method="GROUND",
        ship_to=Address(name="Happy Dog Pet Supply", lines=["123 Main St"], city="New York", state="NY",
                        postal_code="10001", country="US"),
        packages=[Package(weight=Decimal("5"))],
        modified_at=datetime.fromisoformat(modified),
    )


def label_result(*numbers: str) -> ShipmentResult:
    return ShipmentResult(
        shipment_id=numbers[0], tracking_numbers=list(numbers),
        labels=[Label(tracking_number=n, image_format="GIF", image=b"GIF89a") for n in numbers],
        total_charges=Money(amount=Decimal("12.34"), currency="USD"),
    )


def test_register_order_is_idempotent(ledger: Ledger):
    row, created = ledger.register_order("bc_ups", make_order(), actor="run1")
    again, created_again = ledger.register_order("bc_ups", make_order(), actor="run2")
    assert created and not created_again
    assert again.id == row.id and again.state is ShipmentState.EXTRACTED
    assert row.order.number == "SO-1001"
    assert len(ledger.list("bc_ups")) == 1


def test_full_happy_path_keeps_an_audit_trail(ledger: Ledger):
    row, _ = ledger.register_order("bc_ups", make_order())
    ledger.transition(row.id, ShipmentState.ADDRESS_OK, step="validate_address", residential=True)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", service_code="03")
    labelled = ledger.record_label(row.id, label_result("1ZA1B2C30312345678"), label_paths={
        "1ZA1B2C30312345678": "/labels/x.gif"})
    assert labelled.state is ShipmentState.LABELLED
    assert labelled.tracking_numbers == ["1ZA1B2C30312345678"]
    assert labelled.charges == "12.34 USD"
    done = ledger.transition(row.id, ShipmentState.WRITTEN_BACK, step="writeback")
    assert done.state is ShipmentState.WRITTEN_BACK
    trail = ledger.audit_trail(row.id)
    assert [(a["step"], a["to_state"]) for a in trail] == [
        ("extract_orders", "extracted"), ("validate_address", "address_ok"),
        ("create_shipment", "label_requested"), ("create_shipment", "labelled"), ("writeback", "written_back")]


def test_record_label_twice_keeps_the_first(ledger: Ledger):
    row, _ = ledger.register_order("bc_ups", make_order())
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment")
    ledger.record_label(row.id, label_result("1ZA1B2C30312345678"), label_paths={})
    again = ledger.record_label(row.id, label_result("1ZA1B2C30399999999"), label_paths={})
    assert again.tracking_numbers == ["1ZA1B2C30312345678"]


def test_invalid_transition_is_refused(ledger: Ledger):
    row, _ = ledger.register_order("bc_ups", make_order())
    with pytest.raises(InvalidTransition, match="cannot move from 'extracted' to 'delivered'"):
        ledger.transition(row.id, ShipmentState.DELIVERED, step="poll_tracking")


def test_quarantine_then_reopen_when_the_erp_document_changes(ledger: Ledger):
    row, _ = ledger.register_order("bc_ups", make_order())
    q = ledger.quarantine(row.id, step="validate_address", error="order SO-1001: no postcode")
    assert q.state is ShipmentState.QUARANTINED and "no postcode" in q.error
    same, _ = ledger.register_order("bc_ups", make_order())
    assert same.state is ShipmentState.QUARANTINED  # unchanged document stays parked
    fixed, _ = ledger.register_order("bc_ups", make_order(modified="2026-11-23T09:00:00Z"))
    assert fixed.state is ShipmentState.EXTRACTED and fixed.error is None
    outcomes = [a["outcome"] for a in ledger.audit_trail(row.id)]
    assert outcomes == ["ok", "quarantined", "reopened"]


def test_quarantine_never_hides_a_label(ledger: Ledger):
    row, _ = ledger.register_order("bc_ups", make_order())
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment")
    ledger.record_label(row.id, label_result("1ZA1B2C30312345678"), label_paths={})
    after = ledger.quarantine(row.id, step="writeback", error="etag conflict")
    assert after.state is ShipmentState.LABELLED and after.error == "etag conflict"
    assert row.id in [r.id for r in ledger.unfinished("bc_ups")]


def test_claim_is_exclusive_until_released_or_expired(ledger: Ledger):
    row, _ = ledger.register_order("bc_ups", make_order())
    assert ledger.claim(row.id, "worker-a")
    assert not ledger.claim(row.id, "worker-b")
    assert ledger.claim(row.id, "worker-a")  # re-entrant for the owner
    ledger.release(row.id, "worker-a")
    assert ledger.claim(row.id, "worker-b", ttl_seconds=-1)  # already expired
    assert ledger.claim(row.id, "worker-c")  # takes over an expired claim


def _claim_in_process(url: str, row_id: int, owner: str, barrier, results) -> None:
    ledger = Ledger(url)
    barrier.wait()
    results.put((owner, ledger.claim(row_id, owner)))


def test_concurrent_claims_have_exactly_one_winner(ledger: Ledger, ledger_url: str):
    row, _ = ledger.register_order("bc_ups", make_order())
    ctx = mp.get_context("fork")
    n = 8
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(ledger_url, row.id, f"w{i}", barrier, results))
             for i in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(1 for _, won in outcomes if won) == 1


def test_tracking_events_are_deduplicated(ledger: Ledger):
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    event = TrackingEvent(tracking_number="1ZX", status=TrackingStatus.IN_TRANSIT, code="OR", occurred_at=at)
    assert ledger.add_tracking_events([event], source="poll") == [event]
    assert ledger.add_tracking_events([event], source="track_alert") == []
    assert len(ledger.tracking_events("1ZX")) == 1


def test_webhook_inbox_drops_duplicate_deliveries(ledger: Ledger):
    assert ledger.inbox_put("track_alert", {"trackingNumber": "1ZX"}, dedupe_key="a")
    assert not ledger.inbox_put("track_alert", {"trackingNumber": "1ZX"}, dedupe_key="a")
    pending = ledger.inbox_pending("track_alert")
    assert len(pending) == 1
    ledger.inbox_done(pending[0]["id"])
    assert ledger.inbox_pending("track_alert") == []


def test_subscriptions_due_for_renewal(ledger: Ledger):
    now = 1_000_000.0
    ledger.record_subscriptions(["1ZA", "1ZB"], pipeline="p", expires_at=now + 14 * 86400)
    ledger.record_subscriptions(["1ZC"], pipeline="p", expires_at=now + 3600)
    assert ledger.subscriptions_due(["1ZA", "1ZB", "1ZC", "1ZD"], now=now) == ["1ZC", "1ZD"]
