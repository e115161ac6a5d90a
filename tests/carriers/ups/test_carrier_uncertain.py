"""UpsCarrier against the UPS sandbox where an unknown Ship outcome begins: a 5xx after sending and a read
timeout are ambiguous (never a retryable 'nothing happened'), and a voided label is never adopted."""

from __future__ import annotations

import json
import os

import pytest
from tests.carriers.ups.test_hook import FAST, SHIPPER, order

from ml_connector.carriers.protocol import LabelPlan
from ml_connector.carriers.ups.carrier import UpsCarrier
from ml_connector.carriers.ups.hook import UpsHook
from ml_connector.errors import AmbiguousRequestError

PLAN = LabelPlan("03", "Ground", ["S-ORD101001"])


@pytest.fixture
def carrier(ups_conn, sqlite_ledger):
    return UpsCarrier(UpsHook(ledger=sqlite_ledger, retry=FAST))


def test_a_500_after_the_label_is_ambiguous_and_the_label_is_found_by_reference(carrier, ups):
    ups.set_knobs("ups", error_after_label_next=1)
    with pytest.raises(AmbiguousRequestError, match="HTTP 500 after receiving it"):
        carrier.buy_label(order(), PLAN, shipper=SHIPPER, residential=True)
    assert ups.counters("ups")["ship_requests"] == 1  # sent once: a 500 to Ship is never retried
    found = carrier.find_labels(PLAN)
    assert found is not None and len(found.tracking_numbers) == 1


def test_a_read_timeout_on_ship_is_ambiguous(ups_conn, sqlite_ledger, monkeypatch):
    ups = ups_conn
    connection = json.loads(os.environ["AIRFLOW_CONN_UPS_DEFAULT"])
    connection["extra"]["timeout"] = [5, 0.5]  # the connection's transport extra: 0.5 s to read an answer
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(connection))
    carrier = UpsCarrier(UpsHook(ledger=sqlite_ledger, retry=FAST))
    ups.set_knobs("ups", ship_answer_delay_ms=1500)
    with pytest.raises(AmbiguousRequestError, match="read timeout"):
        carrier.buy_label(order(), PLAN, shipper=SHIPPER, residential=True)
    assert ups.counters("ups")["labels_by_reference"] == {"S-ORD101001": 1}


def test_a_lagging_index_finds_nothing_yet_and_a_voided_label_is_never_adopted(carrier, ups):
    ups.set_knobs("ups", reference_index_lag_seconds=600)
    bought = carrier.buy_label(order(), PLAN, shipper=SHIPPER, residential=True)
    assert carrier.find_labels(PLAN) is None  # "not found yet", not "never bought"
    ups.set_knobs("ups", clock_offset_seconds=601.0)
    assert carrier.find_labels(PLAN).tracking_numbers == bought.tracking_numbers
    number = bought.tracking_numbers[0]
    assert carrier.void(number, [number])
    assert carrier.find_labels(PLAN) is None
