"""The UPS carrier's Track Alert and Quantum View calls against the sandbox: batches of 100, a bad number resubmitted
without, a failed batch failing only its numbers, Quantum View followed through its bookmarks, and the webhook
credential stored (and rotated) where the route reads it."""

from __future__ import annotations

import json
import time

from tests.conftest import ups_connection

from ml_connector.carriers.ups import track_alert, webhook
from ml_connector.carriers.ups.carrier import UpsCarrier
from ml_connector.carriers.ups.hook import UpsHook
from ml_connector.ledger import Ledger
from ml_connector.models import Address, Order, Package, TrackingStatus
from ml_connector.secrets import SecretStore

SHIPPER = Address(name="CRONUS USA, Inc.", phone="5105550100", lines=["2100 Powell Street"], city="Emeryville",
                  state="CA", postal_code="94608", country="US")


def carrier_for(ups, ledger: Ledger, monkeypatch, **extra) -> UpsCarrier:
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(ups.url("ups"), **extra))
    return UpsCarrier(UpsHook(ledger=ledger), ledger=ledger)


def ship(carrier: UpsCarrier, count: int) -> list[str]:
    numbers = []
    for i in range(count):
        order = Order(erp="test", erp_id=f"id-{i}", number=f"SO-{i:04d}", ship_method="GROUND",
                      ship_to=Address(name="Fabrikam", lines=["500 Howard Street"], city="San Francisco", state="CA",
                                      postal_code="94105", country="US"), packages=[Package(weight=3)])
        result = carrier.hook.create_shipment(order, service_code="03", shipper=SHIPPER, reference=order.number)
        numbers += result.tracking_numbers
    return numbers


def test_subscriptions_go_in_batches_of_100_and_bad_numbers_never_sink_a_batch(ups, sqlite_ledger, monkeypatch):
    carrier = carrier_for(ups, sqlite_ledger, monkeypatch, track_alert_credential="c-1")
    numbers = ship(carrier, 3)
    many = numbers + [f"1ZA1B2C39{i:09d}" for i in range(150)]  # well-formed, unknown to UPS
    outcome = carrier.subscribe_tracking(many + ["1Z-BAD"], style="v1", url="https://example.com/hook")
    assert sorted(outcome.accepted) == sorted(numbers) and "1Z-BAD" in outcome.invalid
    assert len(outcome.invalid) == 151 and outcome.failed == {}
    assert ups.counters("ups")["track_alert_requests"] == 2  # 153 sendable numbers: 100 + 53

    # a 400 listing an invalid number (one the pattern lets through here) is resubmitted without it
    monkeypatch.setattr(track_alert, "split_invalid", lambda ns: (list(ns), []))
    outcome = carrier.subscribe_tracking([numbers[0], "1Z-BAD"], style="v2", kind="enhanced")
    assert outcome.accepted == [numbers[0]] and outcome.invalid == ["1Z-BAD"]
    assert ups.counters("ups")["track_alert_rejected_batches"] == 1

    ups.set_knobs("ups", track_alert_fail_next=50)  # more 503s than the HTTP layer's retries
    outcome = carrier.subscribe_tracking(numbers, style="v1", url="https://example.com/hook")
    assert outcome.accepted == [] and set(outcome.failed) == set(numbers)
    assert ups.validation_errors("ups") == []


def test_the_v1_credential_is_stored_for_the_route_and_rotation_keeps_the_old_one(ups, sqlite_ledger, monkeypatch):
    store = SecretStore(sqlite_ledger)
    carrier = carrier_for(ups, sqlite_ledger, monkeypatch, track_alert_credential="first")
    assert carrier.prepare_push("v1", store, previous_valid_until=time.time() + 60) is False
    assert webhook.accepted_credentials(store) == ["first"]
    carrier = carrier_for(ups, sqlite_ledger, monkeypatch, track_alert_credential="second")
    assert carrier.prepare_push("v1", store, previous_valid_until=time.time() + 60) is True
    assert webhook.accepted_credentials(store) == ["second", "first"]
    assert "second" not in json.dumps([dict(r) for r in sqlite_ledger.engine.connect().exec_driver_sql(
        "select name, ciphertext from ml_secrets").mappings()])  # encrypted at rest


def test_quantum_view_is_read_through_every_bookmark(ups, sqlite_ledger, monkeypatch):
    carrier = carrier_for(ups, sqlite_ledger, monkeypatch)
    number = ship(carrier, 1)[0]
    ups.advance_ups_package(number, "delivered")
    ups.set_knobs("ups", quantum_view_page_size=2)
    results = carrier.pull_tracking("MLConnectorQV")
    assert [r.status for r in results] == [TrackingStatus.LABEL_CREATED, TrackingStatus.PICKED_UP,
                                           TrackingStatus.IN_TRANSIT, TrackingStatus.OUT_FOR_DELIVERY,
                                           TrackingStatus.DELIVERED]
    delivered = results[4]
    assert delivered.received_by == "JANE DOE" and delivered.delivered_at is not None
    assert ups.counters("ups")["quantum_view_requests"] == 3
    assert carrier.pull_tracking("MLConnectorQV") == []  # read: nothing unread is left
    assert ups.validation_errors("ups") == []
