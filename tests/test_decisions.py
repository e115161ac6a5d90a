"""A person's decisions (ShipmentDecisions) on SQLite and PostgreSQL: adopt, rebuy, retry, each audited with
who and why; a rebuy's new label and the abandoned label that turns up later (voided, recorded)."""

from __future__ import annotations

import pytest
from tests.test_service import (
    PIPELINE,
    SHIPPER,
    Clock,
    ScriptedCarrier,
    checked_row,
    service,
    uncertain_row,
)

from ml_connector.errors import RetryableError
from ml_connector.ledger import Ledger, ShipmentState
from ml_connector.service import DecisionRefused, ShipmentDecisions, parse_tracking_numbers


@pytest.fixture
def carrier() -> ScriptedCarrier:
    return ScriptedCarrier()


def decisions(ledger: Ledger, by: str = "ada", **kwargs) -> ShipmentDecisions:
    return ShipmentDecisions(ledger, by=by, via="test", **kwargs)


def last_decision(ledger: Ledger, row_id: int) -> dict:
    return [a for a in ledger.audit_trail(row_id) if a["step"] == "decision"][-1]


def test_adopt_records_the_label_found_by_hand_with_who_and_why(ledger, carrier):
    row = uncertain_row(ledger, carrier, Clock())
    decision = decisions(ledger).adopt(PIPELINE, "SO-1", "1z0000000000000001", reason="found in Quantum View")
    assert decision.changed and decision.state is ShipmentState.LABELLED
    row = ledger.get(row.id)
    assert row.state is ShipmentState.LABELLED and row.tracking_numbers == ["1Z0000000000000001"]
    audit = last_decision(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["from_state"], audit["to_state"]) == (
        "adopt", "ada", "label_uncertain", "labelled")
    assert audit["detail"]["by"] == "ada" and audit["detail"]["reason"] == "found in Quantum View"
    assert audit["detail"]["via"] == "test" and "found in Quantum View" in audit["message"]
    # the next run writes it back; create buys nothing
    assert service(ledger, carrier).create(row, shipper=SHIPPER).reused and carrier.bought == ["SO-1"]
    again = decisions(ledger).adopt(PIPELINE, "SO-1", ["1Z0000000000000001"])
    assert not again.changed  # a repeated decision (an Airflow retry) changes nothing


def test_adopt_refuses_what_would_corrupt_the_ledger(ledger, carrier):
    first = checked_row(ledger, carrier, "SO-1")
    service(ledger, carrier).create(first, shipper=SHIPPER)  # SO-1 has 1Z0000000000000001
    uncertain_row(ledger, carrier, Clock(), number="SO-2")
    with pytest.raises(DecisionRefused, match="recorded for order SO-1"):
        decisions(ledger).adopt(PIPELINE, "SO-2", "1Z0000000000000001")
    with pytest.raises(DecisionRefused, match="already labelled with 1Z0000000000000001"):
        decisions(ledger).adopt(PIPELINE, "SO-1", "1Z0000000000000009")
    with pytest.raises(DecisionRefused, match="no order SO-404"):
        decisions(ledger).adopt(PIPELINE, "SO-404", "1Z0000000000000009")
    with pytest.raises(DecisionRefused, match="not a tracking number"):
        decisions(ledger).adopt(PIPELINE, "SO-2", "1Z-oops!")
    with pytest.raises(DecisionRefused, match="needs the label's tracking number"):
        decisions(ledger).adopt(PIPELINE, "SO-2", " , ")


def test_rebuy_buys_anew_and_voids_the_abandoned_label_when_it_turns_up(ledger, carrier):
    clock = Clock()
    row = uncertain_row(ledger, carrier, clock, settle_window_seconds=3600)  # bought 1Z..01, not indexed
    decision = decisions(ledger, clock=clock).rebuy(PIPELINE, "SO-1", reason="UPS support finds no label")
    assert decision.state is ShipmentState.ADDRESS_OK
    audit = last_decision(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"]) == (
        "rebuy", "ada", "UPS support finds no label")
    assert not decisions(ledger).rebuy(PIPELINE, "SO-1", reason="again").changed

    shipments = service(ledger, carrier, clock=clock, settle_window_seconds=3600)
    lookups = carrier.lookups
    outcome = shipments.create(ledger.get(row.id), shipper=SHIPPER)
    assert not outcome.reused and outcome.tracking_numbers == ["1Z0000000000000002"]
    assert carrier.lookups == lookups + 1  # it looked once more before buying
    row = ledger.get(row.id)
    assert row.state is ShipmentState.LABELLED and row.next_lookup_at == clock.now + 60
    assert row.id in [r.id for r in ledger.unfinished(PIPELINE)]  # watched

    carrier.catch_up()  # the abandoned label shows up in the reference index
    clock.advance(60)
    outcome = shipments.create(row, shipper=SHIPPER)
    assert outcome.voided == ["1Z0000000000000001"] and carrier.voided == ["1Z0000000000000001"]
    row = ledger.get(row.id)
    assert row.tracking_numbers == ["1Z0000000000000002"] and row.state is ShipmentState.LABELLED
    void = [a for a in ledger.audit_trail(row.id)
            if a["step"] == "void_abandoned_label" and a["outcome"] == "voided"]
    assert len(void) == 1 and void[0]["detail"]["tracking_number"] == "1Z0000000000000001"

    clock.advance(3600)  # the watch ends with the window
    shipments.create(row, shipper=SHIPPER)
    row = ledger.get(row.id)
    assert row.next_lookup_at is None and ledger.audit_trail(row.id)[-1]["outcome"] == "watch_ended"
    assert carrier.bought == ["SO-1", "SO-1"] and carrier.voided == ["1Z0000000000000001"]


def test_rebuy_adopts_the_abandoned_label_if_it_turned_up_before_the_new_purchase(ledger, carrier):
    clock = Clock()
    row = uncertain_row(ledger, carrier, clock)
    decisions(ledger).rebuy(PIPELINE, "SO-1", reason="support found nothing")
    carrier.catch_up()
    outcome = service(ledger, carrier, clock=clock).create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and outcome.tracking_numbers == ["1Z0000000000000001"] and carrier.bought == ["SO-1"]


def test_rebuy_needs_a_reason_and_an_uncertain_order(ledger, carrier):
    row = checked_row(ledger, carrier)
    with pytest.raises(DecisionRefused, match="needs a reason"):
        decisions(ledger).rebuy(PIPELINE, "SO-1", reason=" ")
    with pytest.raises(DecisionRefused, match="is address_ok, not uncertain"):
        decisions(ledger).rebuy(PIPELINE, "SO-1", reason="why not")
    assert ledger.get(row.id).state is ShipmentState.ADDRESS_OK


def test_retry_releases_a_quarantine_and_the_purchase_fact_stays(ledger, carrier):
    carrier.ship_behaviour = "refuse"
    row = checked_row(ledger, carrier)
    with pytest.raises(Exception, match="refused"):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    ledger.quarantine(row.id, step="create_shipment", error="carrier refused the address")
    decision = decisions(ledger, by="grace").retry(PIPELINE, "SO-1", reason="UPS account fixed")
    row = ledger.get(row.id)
    assert decision.state is ShipmentState.EXTRACTED and row.error is None and row.purchase_attempted
    audit = last_decision(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"]) == ("retry", "grace", "UPS account fixed")
    assert "looks the order up by reference first" in audit["message"]
    assert not decisions(ledger).retry(PIPELINE, "SO-1").changed


def test_retry_refuses_uncertain_and_unreadable_orders(ledger, carrier):
    uncertain_row(ledger, carrier, Clock())
    with pytest.raises(DecisionRefused, match="not quarantined \\(use adopt or rebuy\\)"):
        decisions(ledger).retry(PIPELINE, "SO-1")
    ledger.register_failure(PIPELINE, erp="test", erp_id="id-9", order_number="SO-9", modified_at=None,
                            error="order SO-9: no street")
    with pytest.raises(DecisionRefused, match="could not be read from the ERP"):
        decisions(ledger).retry(PIPELINE, "SO-9")


def test_a_decision_waits_for_a_worker_that_holds_the_order(ledger, carrier):
    row = uncertain_row(ledger, carrier, Clock())
    assert ledger.claim(row.id, "busy-worker")
    with pytest.raises(RetryableError, match="being worked on right now"):
        decisions(ledger).rebuy(PIPELINE, "SO-1", reason="no label")
    assert ledger.get(row.id).state is ShipmentState.LABEL_UNCERTAIN


def test_a_decision_says_who_made_it(ledger):
    with pytest.raises(DecisionRefused, match="who made it"):
        ShipmentDecisions(ledger, by=" ", via="test")


def test_tracking_numbers_are_read_as_people_type_them():
    with pytest.raises(DecisionRefused, match="not a tracking number: 1ZA1"):
        parse_tracking_numbers("1za1")
    assert parse_tracking_numbers(["1z0000000000000001", "1Z0000000000000002; 1z0000000000000001"]) == [
        "1Z0000000000000001", "1Z0000000000000002"]


def test_adopt_refuses_an_order_the_erp_never_gave_us(ledger):
    ledger.register_failure(PIPELINE, erp="test", erp_id="id-9", order_number="SO-9", modified_at=None,
                            error="order SO-9: no street")
    with pytest.raises(DecisionRefused, match="could not be read from the ERP"):
        decisions(ledger).adopt(PIPELINE, "SO-9", "1Z0000000000000009")
