"""Canonical tracking events: UPS activity types and codes -> one status set, times in UTC from both offset styles,
the same scan from two sources stored once, delivery date and signature from a Track Alert event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ml_connector.carriers.ups.codes import tracking_status
from ml_connector.carriers.ups.quantum_view import parse_events_response
from ml_connector.carriers.ups.tracking import parse_track_alert_result, parse_track_response
from ml_connector.ledger import Ledger
from ml_connector.ledger.tracking import event_key
from ml_connector.models import TrackingStatus as S


@pytest.mark.parametrize(("kind", "code", "three", "expected"), [
    ("M", "MP", None, S.LABEL_CREATED), ("I", "OR", "038", S.PICKED_UP), ("I", "DP", "005", S.IN_TRANSIT),
    ("I", "OT", "021", S.OUT_FOR_DELIVERY), ("D", "FS", "011", S.DELIVERED), ("X", "X1", "013", S.EXCEPTION),
    ("MV", None, None, S.VOIDED), ("U", None, None, S.IN_TRANSIT), ("I", None, "021", S.OUT_FOR_DELIVERY),
    ("I", None, 38, S.PICKED_UP), (None, None, None, S.UNKNOWN)])
def test_activity_types_and_codes_map_to_one_status_set(kind, code, three, expected):
    assert tracking_status(kind, code, three) is expected


def event(**changes):
    body = {"trackingNumber": "1Z204W4R0308071865", "localActivityDate": "20240423", "localActivityTime": "095004",
            "activityLocation": {"city": "CHARLOTTE", "stateProvince": "NC", "postalCode": "28209", "country": "US"},
            "activityStatus": {"type": "D", "code": "FS", "description": "DELIVERED", "descriptionCode": "011"},
            "actualDeliveryDate": "20240423", "actualDeliveryTime": "095004", "gmtActivityDate": "20240423",
            "gmtActivityTime": "135004", "gmtOffset": "-04.00", "receivedBy": "JANE DOE"}
    body.update(changes)
    return body


def test_a_track_alert_delivery_has_its_utc_time_date_and_signature():
    result = parse_track_alert_result(event())
    assert result.status is S.DELIVERED and result.received_by == "JANE DOE"
    assert result.delivered_at == datetime(2024, 4, 23, 13, 50, 4, tzinfo=UTC)
    assert result.events[0].occurred_at == datetime(2024, 4, 23, 13, 50, 4, tzinfo=UTC)
    assert result.events[0].location == "CHARLOTTE, NC, US"


def test_the_same_scan_from_the_webhook_and_the_track_api_is_stored_once(tmp_path):
    pushed = parse_track_alert_result(event()).events[0]  # "-04.00"
    polled = parse_track_response({"trackResponse": {"shipment": [{"package": [{
        "trackingNumber": "1Z204W4R0308071865",
        "activity": [{"date": "20240423", "time": "095004", "gmtDate": "20240423", "gmtTime": "135004",
                      "gmtOffset": "-04:00", "status": {"type": "D", "code": "FS", "description": "DELIVERED"}}]}]}]}},
        "1Z204W4R0308071865").events[0]  # "-04:00"
    assert event_key(pushed) == event_key(polled)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert len(ledger.add_tracking_events([pushed], source="webhook")) == 1
    assert ledger.add_tracking_events([polled], source="poll") == []
    assert ledger.tracking_events("1Z204W4R0308071865")[0]["occurred_at"] == "2024-04-23T13:50:04+00:00"


def test_quantum_view_records_map_to_canonical_results():
    body = {"QuantumViewResponse": {"Response": {"ResponseStatusCode": "1"}, "QuantumViewEvents": {
        "SubscriptionEvents": [{"SubscriptionFile": [{
            "Manifest": [{"PickupDate": "20261120", "Package": [{"TrackingNumber": "1ZA"}]}],
            "Origin": [{"TrackingNumber": "1ZB", "Date": "20261120", "Time": "101500"}],
            "Exception": [{"TrackingNumber": "1ZC", "Date": "20261120", "Time": "101500",
                           "StatusDescription": "Weather delay"}],
            "Delivery": [{"TrackingNumber": "1ZD", "Date": "20261121", "Time": "090000",
                          "DeliveryLocation": {"SignedForByName": "JANE DOE"}}],
            "Generic": [{"TrackingNumber": "1ZE", "ActivityType": "VM", "Activity": {"Date": "20261120",
                                                                                  "Time": "080000"}},
                        {"TrackingNumber": "1ZF", "ActivityType": "UR", "Activity": {"Date": "20261120"}}]}]}]},
        "Bookmark": "WE9MVFFBMQ=="}}
    results, bookmark, errors = parse_events_response(body)
    assert [(r.tracking_number, r.status) for r in results] == [
        ("1ZA", S.LABEL_CREATED), ("1ZB", S.PICKED_UP), ("1ZC", S.EXCEPTION), ("1ZD", S.DELIVERED),
        ("1ZE", S.VOIDED), ("1ZF", S.RETURNED)]
    assert results[3].received_by == "JANE DOE" and bookmark == "WE9MVFFBMQ==" and errors == []
