"""The report step's parts: task states as the Task SDK returns them, which failures are the pipeline's, and what
a run did according to the ledger's audit trail (SQLite and PostgreSQL ledgers)."""

from __future__ import annotations

import enum
from decimal import Decimal

from ml_connector.ledger import Ledger, ShipmentState
from ml_connector.models import Address, Order, Package, ShipmentResult
from ml_connector.operators import report as report_module
from ml_connector.operators.base import LANE_OUTCOME_KEY
from ml_connector.operators.report import ReportOperator, parse_task_states
from ml_connector.settings import PipelineSettings

PIPELINE = "bc_ups"
RUN = "scheduled__2026-11-20T10:15:00+00:00"


def make_order(number: str) -> Order:
    return Order(erp="business_central", erp_id=f"guid-{number}", number=number, ship_method="GROUND",
                 ship_to=Address(name="Happy Dog", lines=["123 Main St"], city="New York", state="NY",
                                 postal_code="10001", country="US"),
                 packages=[Package(weight=Decimal("5"))])


def operator(ledger: Ledger | None = None, **settings) -> ReportOperator:
    op = ReportOperator(task_id="report", extract_task_id="extract_orders",
                        lane_task_ids=["process_order.validate_address", "process_order.create_shipment"],
                        pipeline_id=PIPELINE, settings=PipelineSettings(erp="business_central", **settings))
    op._ledger = ledger
    return op


class FakeTI:
    """Just what the report reads from the other task instances: their XComs."""

    def __init__(self, xcoms: dict[tuple[str, str, int], object]):
        self.xcoms = xcoms

    def xcom_pull(self, task_ids, key="return_value", map_indexes=-1):
        return self.xcoms.get((task_ids, key, map_indexes))


def test_task_states_are_read_back_per_task_and_map_index():
    states = {"extract_orders": "success", "process_order.validate_address_0": "failed",
              "process_order.validate_address_12": "success", "process_order.create_shipment": "upstream_failed",
              "report": None, "not_a_task_3": "failed"}
    tasks = ["extract_orders", "process_order.validate_address", "process_order.create_shipment", "report"]
    assert parse_task_states(states, tasks) == {
        ("extract_orders", -1): "success", ("process_order.validate_address", 0): "failed",
        ("process_order.validate_address", 12): "success", ("process_order.create_shipment", -1): "upstream_failed",
        ("report", -1): "None"}


def test_a_lane_that_only_quarantined_is_not_a_pipeline_failure_and_anything_else_is():
    lanes = [{"label": "SO-1"}, {"label": "SO-2"}, {"label": "SO-3"}]
    states = {("extract_orders", -1): "success", ("process_order.validate_address", 0): "failed",
              ("process_order.validate_address", 1): "failed", ("process_order.validate_address", 2): "failed",
              ("process_order.create_shipment", 0): "skipped", ("poll_tracking", -1): "failed",
              ("report", -1): "running"}
    ti = FakeTI({
        ("process_order.validate_address", LANE_OUTCOME_KEY, 0): {"kind": "quarantined",
                                                                  "orders": [["SO-1", "no postal code"]]},
        ("process_order.validate_address", LANE_OUTCOME_KEY, 1): {"kind": "configuration",
                                                                  "orders": [["SO-2", "HTTP 401"], ["SO-9", "x"]]},
        # lane 2 failed without saying why (killed, crashed): counted as the pipeline's failure
    })
    assert operator().pipeline_failures(ti, states, lanes) == [
        "poll_tracking failed (see its log)",
        "process_order.validate_address[SO-2] failed (configuration): SO-2: HTTP 401 (+1 more)",
        "process_order.validate_address[SO-3] failed (see its log)",
    ]


def test_a_failed_extract_and_what_it_blocked_are_pipeline_failures():
    states = {("extract_orders", -1): "failed", ("process_order.validate_address", -1): "upstream_failed",
              ("process_order.create_shipment", -1): "upstream_failed", ("poll_tracking", -1): "skipped"}
    assert operator().pipeline_failures(FakeTI({}), states, []) == [
        "extract_orders failed (see its log)",
        "2 task(s) did not run because an upstream task failed: process_order.create_shipment, "
        "process_order.validate_address"]


def test_the_audit_trail_tells_what_this_run_did_and_nothing_else(ledger: Ledger):
    actor = f"{RUN}/process_order.validate_address[0]#1"
    other = "scheduled__2026-11-20T10:00:00+00:00/process_order.validate_address[0]#1"
    old, _ = ledger.register_order(PIPELINE, make_order("SO-OLD"), actor=other)
    ledger.quarantine(old.id, step="validate_address", error="no postal code", actor=other)
    new, _ = ledger.register_order(PIPELINE, make_order("SO-NEW"), actor=f"{RUN}/extract_orders[-1]#1")
    ledger.quarantine(new.id, step="validate_address", error="PO box", actor=actor)
    good, _ = ledger.register_order(PIPELINE, make_order("SO-GOOD"), actor=f"{RUN}/extract_orders[-1]#1")
    ledger.transition(good.id, ShipmentState.ADDRESS_OK, step="validate_address", actor=actor)
    ledger.transition(good.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor=actor)
    ledger.record_label(good.id, ShipmentResult(shipment_id="1Z1", tracking_numbers=["1Z1"]), label_paths={},
                        actor=f"{RUN}/process_order.create_shipment[2]#2")
    ledger.transition(good.id, ShipmentState.WRITTEN_BACK, step="writeback", actor=f"{RUN}/w[2]#1")
    ledger.transition(good.id, ShipmentState.WRITTEN_BACK, step="writeback", actor=f"{RUN}/w[2]#2")  # a no-op
    # a run whose id differs only where LIKE would see a wildcard ('_') is another run
    lookalike = RUN.replace("__", "_x")
    odd, _ = ledger.register_order(PIPELINE, make_order("SO-ODD"), actor=f"{lookalike}/e[-1]#1")
    ledger.quarantine(odd.id, step="validate_address", error="odd", actor=f"{lookalike}/v[0]#1")

    summary = operator(ledger).summarise(RUN, {"orders": 3, "new": 2, "requeued": 1})
    assert summary["counts"] == {"seen": 4, "labelled": 1, "written_back": 1, "quarantined": 1, "uncertain": 0}
    assert summary["quarantined"] == [{"order": "SO-NEW", "state": "quarantined", "step": "validate_address",
                                       "reason": "PO box"}]
    assert summary["labelled"] == ["SO-GOOD"] and summary["written_back"] == ["SO-GOOD"]
    assert summary["note"] == "seen 4 · labelled 1 · written back 1 · quarantined 1 · uncertain 0"
    assert operator(ledger).summarise("manual__other", None)["counts"]["seen"] is None


def test_orders_newly_label_uncertain_are_listed_where_the_ledger_has_that_state(ledger: Ledger, monkeypatch):
    class States(enum.StrEnum):
        LABEL_UNCERTAIN = "label_uncertain"

    monkeypatch.setattr(report_module, "uncertain_state", lambda: States.LABEL_UNCERTAIN)
    row, _ = ledger.register_order(PIPELINE, make_order("SO-1"), actor=f"{RUN}/extract_orders[-1]#1")
    with ledger.write() as conn:  # the audit row of a move into label_uncertain, as that state's code writes it
        ledger._audit(conn, shipment=row, step="create_shipment", outcome="uncertain", from_state="label_requested",
                      to_state="label_uncertain", message="no answer from Ship", actor=f"{RUN}/c[0]#2")
    summary = operator(ledger).summarise(RUN, None)
    assert [o["order"] for o in summary["uncertain"]] == ["SO-1"] and summary["counts"]["uncertain"] == 1
