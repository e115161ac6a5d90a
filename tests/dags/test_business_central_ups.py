"""Full runs of the business_central_ups DAG with dag.test() against the UPS and Business Central sandboxes."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from airflow.sdk import CronDataIntervalTimetable
from tests.dags.conftest import (
    PIPELINE,
    bc_orders,
    interval_end,
    load_dag,
    place_orders,
    run_interval,
    states,
)

from ml_connector.ledger import Ledger, ShipmentState, in_flight

GOOD = ["S-ORD101001", "S-ORD101002", "S-ORD101003", "S-ORD101004", "S-ORD101005", "S-ORD101009", "S-ORD101010"]
# full DAG runs share one metadata DB per worker: keep them on one worker (make test uses --dist loadgroup)
pytestmark = pytest.mark.xdist_group("airflow_metadata_db")

BROKEN = {
    "S-ORD101006": "no postal code",
    "S-ORD101007": "shipment method 'PIGEON' ('Carrier Pigeon') is not mapped to a UPS service",
    "S-ORD101008": "UPS does not deliver to PO boxes",
    "S-ORD101014": "is 40 characters; UPS reference numbers hold at most 35",
}


def test_dag_integrity():
    dag = load_dag()
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.tags and dag.doc_md and dag.default_args["owner"]
    assert dag.default_args["retries"] >= 2 and dag.default_args["retry_policy"] is not None
    assert {t.task_id for t in dag.tasks} == {
        "extract_orders", "process_order.validate_address", "process_order.create_shipment",
        "process_order.writeback", "poll_tracking", "report"}
    assert dag.get_task("poll_tracking").trigger_rule == "all_done"


def test_run_labels_good_orders_once_and_quarantines_broken_ones(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(1)
    place_orders(bc, end - timedelta(minutes=7))
    dr = run_interval(load_dag(), end)
    assert (dr.data_interval_start, dr.data_interval_end) == (end - timedelta(minutes=15), end)

    ledger = Ledger(pipeline_env["ledger_url"])
    rows = {r.order_number: r for r in ledger.list(PIPELINE)}
    erp = bc_orders(bc)
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    for number in GOOD:
        row = rows[number]
        assert row.state is ShipmentState.WRITTEN_BACK, (number, row.error)
        assert by_reference[number] == 1  # exactly one label per order
        assert erp[number]["packageTrackingNo"] == row.tracking_numbers[0]  # read back from Business Central
        assert row.label_path and (pipeline_env["tmp"] / "labels").exists()
        steps = [a["to_state"] for a in ledger.audit_trail(row.id)]
        assert steps == ["extracted", "address_ok", "label_requested", "labelled", "written_back"]
    for number, reason in BROKEN.items():
        assert rows[number].state is ShipmentState.QUARANTINED and reason in rows[number].error
        assert number not in by_reference
    assert "S-ORD101011" not in rows  # modified outside the interval

    lanes = states(dr)
    for number in GOOD:
        assert {lanes[(step, number)] for step in ("validate_address", "create_shipment", "writeback")} == {"success"}
    for number in BROKEN:
        assert lanes[("validate_address", number)] == "failed"
        assert lanes[("create_shipment", number)] == "skipped"
    assert sandbox.validation_errors("ups") == []
    # every task gave back the slots it held of each account's in-flight budget
    for api in ("ups:ups_default", "business_central:business_central_default"):
        assert in_flight.holders(ledger, api, now=time.time()) == {}


def test_same_interval_again_buys_no_label(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(2)
    place_orders(bc, end - timedelta(minutes=5))
    dag = load_dag()
    run_interval(dag, end)
    labels = sandbox.counters("ups")["labels_created"]
    assert labels == len(GOOD)
    dag.test(logical_date=end + timedelta(minutes=2))  # the same interval, a second manual run
    assert sandbox.counters("ups")["labels_created"] == labels


def test_failed_writeback_is_finished_by_the_next_run_without_a_new_label(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(3)
    # every order starts far in the past, then two are released in this interval
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101004"])
    sandbox.set_knobs("business_central", etag_conflict_next=1000)  # every PATCH loses to "another user"
    dag = load_dag()
    dr = run_interval(dag, end)
    ledger = Ledger(pipeline_env["ledger_url"])
    assert {r.state for r in ledger.list(PIPELINE)} == {ShipmentState.LABELLED}
    assert states(dr)[("writeback", "S-ORD101001")] == "failed"
    assert "Another user" in ledger.find_by_number(PIPELINE, "S-ORD101001").error

    sandbox.set_knobs("business_central", etag_conflict_next=0)
    run_interval(dag, end + timedelta(minutes=15))  # the next interval re-queues the unfinished rows
    rows = [ledger.find_by_number(PIPELINE, n) for n in ("S-ORD101001", "S-ORD101004")]
    assert {r.state for r in rows} == {ShipmentState.WRITTEN_BACK}
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    assert by_reference["S-ORD101001"] == 1 and by_reference["S-ORD101004"] == 1
    erp = bc_orders(bc)
    assert all(erp[r.order_number]["packageTrackingNo"] == r.tracking_numbers[0] for r in rows)


def test_dropped_ship_connection_adopts_the_label_instead_of_buying_another(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(4)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=["S-ORD101001"])
    sandbox.set_knobs("ups", crash_after_label_next=1)  # UPS creates the label, then the connection drops
    run_interval(load_dag(), end)
    row = Ledger(pipeline_env["ledger_url"]).find_by_number(PIPELINE, "S-ORD101001")
    assert row.state is ShipmentState.WRITTEN_BACK
    assert sandbox.counters("ups")["connections_dropped"] == 1
    assert sandbox.counters("ups")["labels_by_reference"]["S-ORD101001"] == 1
    outcomes = [a["outcome"] for a in Ledger(pipeline_env["ledger_url"]).audit_trail(row.id)]
    # the unanswered Ship made the order label_uncertain; the lookup at once found the label and adopted it
    assert outcomes.index("uncertain") < outcomes.index("adopted")
    assert sandbox.counters("ups")["ship_requests"] == 1


def test_rate_limits_on_both_sides_are_absorbed(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(5)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101002"])
    sandbox.set_knobs("ups", burst_429=2)
    sandbox.set_knobs("business_central", burst_429=2)
    run_interval(load_dag(), end)
    rows = Ledger(pipeline_env["ledger_url"]).list(PIPELINE)
    assert {r.state for r in rows} == {ShipmentState.WRITTEN_BACK}
    assert sandbox.counters("ups")["rate_limited"] == 2 and sandbox.counters("business_central")["rate_limited"] == 2
    assert sandbox.counters("ups")["labels_created"] == 2


def test_backfill_of_two_past_days_processes_each_days_orders_once(pipeline_env, monkeypatch):
    """A backfill is runs over past data intervals: each run owns its day, and re-running a day (reprocess
    'completed') buys nothing. The scheduler-driven `airflow backfill create` is in tests/slow."""
    import yaml

    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    path = pipeline_env["settings_path"]
    settings = yaml.safe_load(path.read_text())
    settings[PIPELINE]["schedule"] = "0 0 * * *"
    path.write_text(yaml.safe_dump(settings))
    dag = load_dag()
    today = interval_end(0).replace(hour=0, minute=0)
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    place_orders(bc, today - timedelta(days=9))
    place_orders(bc, day1 + timedelta(hours=10), numbers=["S-ORD101001", "S-ORD101002"])
    place_orders(bc, day2 + timedelta(hours=15), numbers=["S-ORD101003", "S-ORD101004"])

    first = dag.test(logical_date=day2 + timedelta(minutes=1))   # owns [day1, day2)
    second = dag.test(logical_date=today + timedelta(minutes=1))  # owns [day2, today)
    assert (first.data_interval_start, first.data_interval_end) == (day1, day2)
    assert (second.data_interval_start, second.data_interval_end) == (day2, today)
    ledger = Ledger(pipeline_env["ledger_url"])
    runs = {r.order_number: r.last_run_id for r in ledger.list(PIPELINE)}
    assert set(runs) == {"S-ORD101001", "S-ORD101002", "S-ORD101003", "S-ORD101004"}
    labels = sandbox.counters("ups")["labels_created"]
    assert labels == 4

    dag.test(logical_date=day2 + timedelta(minutes=2))  # reprocess the first day
    assert sandbox.counters("ups")["labels_created"] == labels
    assert {r.state for r in ledger.list(PIPELINE)} == {ShipmentState.WRITTEN_BACK}


def test_a_wrong_ups_secret_fails_the_lanes_quarantines_nothing_and_the_fix_labels_everything(
        pipeline_env, monkeypatch):
    import json

    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(8)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101002"])
    good = json.loads(os.environ["AIRFLOW_CONN_UPS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps({**good, "password": "wrong-secret"}))
    dag = load_dag()
    dr = run_interval(dag, end)
    ledger = Ledger(pipeline_env["ledger_url"])
    rows = ledger.list(PIPELINE)
    assert {r.state for r in rows} == {ShipmentState.EXTRACTED}  # nothing quarantined
    assert states(dr)[("validate_address", "S-ORD101001")] == "failed"
    assert sandbox.counters("ups")["labels_created"] == 0

    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(good))  # the secret is fixed
    run_interval(dag, end + timedelta(minutes=15))  # the next run re-queues the unfinished orders
    assert {r.state for r in ledger.list(PIPELINE)} == {ShipmentState.WRITTEN_BACK}
    assert sandbox.counters("ups")["labels_created"] == 2
