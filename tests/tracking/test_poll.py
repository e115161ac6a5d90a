"""poll_tracking: which packages cost a Track API call, pushed events from the inbox, subscriptions and their
renewal, the Quantum View fallback, and ERP writes only on a status change."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from tests.tracking.conftest import (
    NOW,
    PIPELINE,
    FakeCarrier,
    FakeErp,
    labelled,
    poll_operator,
    run,
    set_subscribed,
)

from ml_connector.ledger import Ledger, ShipmentState
from ml_connector.models import TrackingStatus

V1 = {"track_alert": "v1", "track_alert_url": "https://connector.example.com/ml-connector/webhooks/ups/track-alert"}
HOUR, DAY = 3600, 86400


def test_250_open_shipments_with_track_alert_active_cost_no_track_call(ledger: Ledger):
    numbers = labelled(ledger, 250)
    set_subscribed(ledger, numbers[:100], days_ago=3)  # events came within the day
    for n in numbers[:100]:
        ledger.record_package_status(n, TrackingStatus.IN_TRANSIT, source="webhook", now=NOW - 6 * HOUR)
    set_subscribed(ledger, numbers[100:], days_ago=0.5)  # subscribed this morning: events on their way
    carrier, erp = FakeCarrier(), FakeErp()
    counts = run(poll_operator(ledger, carrier, erp, **V1))
    assert carrier.track_calls == [] and carrier.subscribe_calls == []
    assert counts["skipped"]["pushed"] == 250


def test_a_subscribed_package_silent_for_a_day_is_looked_at_once_a_day(ledger: Ledger):
    number = labelled(ledger, 1)[0]
    set_subscribed(ledger, [number], days_ago=2)  # no event since: UPS may have dropped them
    carrier, erp = FakeCarrier(), FakeErp()
    run(poll_operator(ledger, carrier, erp, **V1))
    assert carrier.track_calls == [number]
    run(poll_operator(ledger, carrier, erp, now=NOW + 2 * HOUR, **V1))
    assert carrier.track_calls == [number]  # not hourly: once per tracking_push_fresh_hours


def test_without_track_alert_one_call_per_package_old_enough_to_have_scans(ledger: Ledger):
    old = labelled(ledger, 250)
    new = labelled(ledger, 20, start=1000, age_hours=0.1)  # labelled six minutes ago: no scan yet
    carrier, erp = FakeCarrier(), FakeErp()
    counts = run(poll_operator(ledger, carrier, erp))
    assert sorted(carrier.track_calls) == sorted(old) and not set(new) & set(carrier.track_calls)
    assert counts["skipped"]["too_new"] == 20 and counts["polled"] == 250
    assert len(erp.statuses) == 250 and {s[1] for s in erp.statuses} == {"in_transit"}

    carrier.track_calls.clear()
    run(poll_operator(ledger, carrier, erp, now=NOW + 10 * 60))  # the next 15-minute run: polled just now
    assert carrier.track_calls == []
    run(poll_operator(ledger, carrier, erp, now=NOW + 2 * HOUR))  # every package (the new ones too) once more
    assert sorted(carrier.track_calls) == sorted(old + new)
    assert len(erp.statuses) == 250 + 20  # the old ones did not change: the ERP is not written again


def test_delivered_voided_and_returned_packages_are_never_polled_again(ledger: Ledger):
    numbers = labelled(ledger, 4)
    carrier, erp = FakeCarrier(), FakeErp()
    carrier.statuses = {numbers[0]: TrackingStatus.DELIVERED, numbers[1]: TrackingStatus.VOIDED,
                        numbers[2]: TrackingStatus.RETURNED}
    run(poll_operator(ledger, carrier, erp))
    rows = {r.tracking_numbers[0]: r.state for r in ledger.list(PIPELINE)}
    assert rows == {numbers[0]: ShipmentState.DELIVERED, numbers[1]: ShipmentState.VOIDED,
                    numbers[2]: ShipmentState.RETURNED, numbers[3]: ShipmentState.IN_TRANSIT}
    assert ("SO-00000", "delivered", "2026-11-20T11:00:00+00:00", "JANE DOE") in erp.statuses
    carrier.track_calls.clear()
    run(poll_operator(ledger, carrier, erp, now=NOW + 2 * HOUR))
    assert carrier.track_calls == [numbers[3]]


def test_packages_open_past_the_age_limit_are_reported_once_not_polled(ledger: Ledger):
    stale = labelled(ledger, 2, age_hours=40 * 24)
    fresh = labelled(ledger, 1, start=10)
    carrier, erp = FakeCarrier(), FakeErp()
    counts = run(poll_operator(ledger, carrier, erp))
    assert carrier.track_calls == fresh
    assert counts["too_old"] == ["SO-00000", "SO-00001"]
    assert [a["outcome"] for a in ledger.audit_trail(ledger.find_by_number(PIPELINE, "SO-00000").id)][-1] == "stale"
    counts = run(poll_operator(ledger, carrier, erp, now=NOW + 2 * HOUR))
    assert counts["too_old"] == [] and counts["skipped"]["reported"] == 2 and stale[0] not in carrier.track_calls


def test_pushed_events_from_the_inbox_move_the_erp_and_spare_the_poll(ledger: Ledger):
    numbers = labelled(ledger, 2)
    carrier, erp = FakeCarrier(), FakeErp()
    for payload in ({"number": numbers[0], "status": "in_transit", "at": NOW - 600, "code": "DP"},
                    {"number": numbers[0], "status": "out_for_delivery", "at": NOW - 300, "code": "OT"}):
        assert ledger.inbox_put("fake", json.dumps(payload), dedupe_key=f"{payload['code']}")
    assert not ledger.inbox_put("fake", "{}", dedupe_key="OT")  # a replay is stored once
    ledger.inbox_put("fake", json.dumps({"number": numbers[1]}), dedupe_key="bad")  # not an event
    counts = run(poll_operator(ledger, carrier, erp))
    assert counts["pushed"] == 2 and counts["bad"] == 1
    assert carrier.track_calls == [numbers[1]]  # the pushed package costs no call
    assert ("SO-00000", "out_for_delivery", None, None) in erp.statuses
    assert ledger.inbox_pending("fake") == []
    # an older event arriving late does not move the status back
    ledger.inbox_put("fake", json.dumps({"number": numbers[0], "status": "picked_up", "at": NOW - 3000,
                                         "code": "OR"}), dedupe_key="OR")
    run(poll_operator(ledger, carrier, erp, now=NOW + 60))
    assert ledger.package_tracking([numbers[0]])[numbers[0]].status == "out_for_delivery"
    assert len(ledger.tracking_events(numbers[0])) == 3


def test_the_erp_is_written_only_when_the_status_changes(ledger: Ledger):
    number = labelled(ledger, 1)[0]
    carrier, erp = FakeCarrier(), FakeErp()
    run(poll_operator(ledger, carrier, erp))
    run(poll_operator(ledger, carrier, erp, now=NOW + 2 * HOUR))
    assert [s[1] for s in erp.statuses] == ["in_transit"]
    carrier.statuses[number] = TrackingStatus.OUT_FOR_DELIVERY
    run(poll_operator(ledger, carrier, erp, now=NOW + 4 * HOUR))
    assert [s[1] for s in erp.statuses] == ["in_transit", "out_for_delivery"]


def test_labels_are_subscribed_in_batches_and_bad_numbers_do_not_come_back(ledger: Ledger):
    numbers = labelled(ledger, 3, age_hours=0.05)
    carrier, erp = FakeCarrier(), FakeErp()
    carrier.invalid = {numbers[2]}
    counts = run(poll_operator(ledger, carrier, erp, **V1))
    assert carrier.subscribe_calls == [numbers] and counts["subscribed"] == 2
    subscriptions = ledger.subscriptions(numbers)
    assert subscriptions[numbers[0]].status == "active" and subscriptions[numbers[0]].expires_at == NOW + 14 * DAY
    assert subscriptions[numbers[2]].status == "invalid"
    run(poll_operator(ledger, carrier, erp, now=NOW + HOUR, **V1))
    assert len(carrier.subscribe_calls) == 1  # nothing due: the invalid number is not sent again


def test_renewal_at_day_12_in_transit_not_when_delivered_and_a_failed_one_switches_to_quantum_view(
        ledger: Ledger):
    in_transit, delivered, failing = labelled(ledger, 3, age_hours=12 * 24)
    set_subscribed(ledger, [in_transit, delivered, failing], days_ago=12)
    ledger.record_package_status(delivered, TrackingStatus.DELIVERED, source="webhook", received_by="JANE DOE",
                                 now=NOW - DAY)
    carrier, erp = FakeCarrier(), FakeErp()
    carrier.fail_subscription = {failing}
    settings = {**V1, "quantum_view_fallback_subscription": "MLConnectorQV"}
    counts = run(poll_operator(ledger, carrier, erp, **settings))
    assert carrier.subscribe_calls == [[in_transit, failing]]
    subscriptions = ledger.subscriptions([in_transit, delivered, failing])
    assert subscriptions[in_transit].status == "active" and subscriptions[in_transit].subscribed_at == NOW
    assert subscriptions[delivered].status == "ended"
    assert subscriptions[failing].status == "failed" and subscriptions[failing].quantum_view
    assert counts["subscribe_failed"] == 1
    assert carrier.track_calls == [failing]  # no push covers it in this run

    # the next run reads Quantum View for it (and retries the subscription, which fails again)
    from datetime import UTC, datetime

    from tests.tracking.conftest import event

    from ml_connector.models import TrackingResult
    carrier.quantum_view = [TrackingResult(
        tracking_number=failing, status=TrackingStatus.DELIVERED,
        events=[event(failing, TrackingStatus.DELIVERED, NOW + 600, "QV-D")],
        delivered_at=datetime.fromtimestamp(NOW + 600, UTC), received_by="JANE DOE")]
    carrier.track_calls.clear()
    run(poll_operator(ledger, carrier, erp, now=NOW + HOUR, **settings))
    assert carrier.pull_calls == ["MLConnectorQV"] and carrier.track_calls == []
    row = ledger.find_by_number(PIPELINE, "SO-00002")
    assert row.state is ShipmentState.DELIVERED and row.delivered_at == "2026-11-20T12:10:00+00:00"
    assert erp.statuses[-1] == ("SO-00002", "delivered", "2026-11-20T12:10:00+00:00", "JANE DOE")


def test_a_credential_rotation_renews_every_open_subscription(ledger: Ledger):
    numbers = labelled(ledger, 2)
    set_subscribed(ledger, numbers, days_ago=1)
    carrier, erp = FakeCarrier(), FakeErp()
    carrier.rotated = True
    run(poll_operator(ledger, carrier, erp, **V1))
    assert carrier.subscribe_calls == [numbers]


def test_a_pushed_delivery_without_signature_costs_one_call_for_the_proof_of_delivery(ledger: Ledger):
    number = labelled(ledger, 1)[0]
    set_subscribed(ledger, [number], days_ago=1)
    ledger.inbox_put("fake", json.dumps({"number": number, "status": "delivered", "at": NOW - 600, "code": "FS"}),
                     dedupe_key="FS")
    carrier, erp = FakeCarrier(), FakeErp()
    carrier.statuses[number] = TrackingStatus.DELIVERED
    counts = run(poll_operator(ledger, carrier, erp, **V1))
    assert counts["proof_of_delivery"] == 1 and carrier.track_calls == [number]
    assert erp.statuses == [("SO-00000", "delivered", "2026-11-20T11:50:00+00:00", "JANE DOE")]
    with pytest.raises(AirflowSkipException):  # nothing open is left
        run(poll_operator(ledger, carrier, erp, now=NOW + 2 * HOUR, **V1))
    assert carrier.track_calls == [number]  # delivered: never again
