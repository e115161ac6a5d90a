"""Lanes, their grid names, and the retry policy the operators share."""

from __future__ import annotations

from ml_connector.ledger import ShipmentRow, ShipmentState
from ml_connector.operators.base import RETRY_POLICY, lane_label, make_lanes


def rows(count: int) -> list[ShipmentRow]:
    return [ShipmentRow(id=i, pipeline="p", erp="e", erp_id=str(i), order_number=f"SO-{i:03d}",
                        state=ShipmentState.EXTRACTED) for i in range(count)]


def test_one_order_per_lane_up_to_max_lanes():
    lanes = make_lanes(rows(3), max_lanes=5)
    assert [lane["label"] for lane in lanes] == ["SO-000", "SO-001", "SO-002"]
    assert lanes[0]["orders"] == [[0, "SO-000"]]


def test_beyond_max_lanes_orders_are_batched_evenly():
    lanes = make_lanes(rows(10), max_lanes=4)
    assert len(lanes) == 4 and sum(len(lane["orders"]) for lane in lanes) == 10
    assert lanes[0]["label"] == "SO-000, SO-001, SO-002"


def test_lane_label_names_three_orders_then_counts():
    assert lane_label(["A", "B", "C", "D", "E"]) == "A, B, C +2 more"
    assert make_lanes([], max_lanes=3) == []


def test_retry_policy_retries_transient_errors_and_fails_permanent_ones_at_once():
    reasons = [rule.reason for rule in RETRY_POLICY.rules]
    assert any("transient" in r for r in reasons) and any("retrying cannot help" in r for r in reasons)
