"""Never a second label, end to end: full dag.test() runs of business_central_ups against the sandboxes with a
Ship call whose outcome is unknown (500 after the label, dropped connection, read timeout), a reference index
that lags 10 minutes behind the purchase, and F2's refused lookups followed by an ERP edit. Each buys exactly
one label per order; the order waits as label_uncertain (its lane red) and is adopted once the index shows it."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import yaml
from tests.dags.conftest import (
    PIPELINE,
    bc_orders,
    interval_end,
    load_dag,
    place_orders,
    run_interval,
    states,
)

from ml_connector.ledger import Ledger, ShipmentState

pytestmark = pytest.mark.xdist_group("airflow_metadata_db")

ORDER = "S-ORD101001"
INDEX_LAG = 600  # seconds: UPS's reference index shows a label 10 minutes after it was bought


def fast_lookups(pipeline_env) -> None:
    """Every run's create_shipment looks an uncertain order up again (no backoff wait between runs)."""
    path = pipeline_env["settings_path"]
    settings = yaml.safe_load(path.read_text())
    settings[PIPELINE]["lookup_backoff_seconds"] = 0
    path.write_text(yaml.safe_dump(settings))


def ups_read_timeout(monkeypatch, seconds: float) -> None:
    """The UPS connection's transport extra ``timeout``: [connect, read] seconds."""
    connection = json.loads(os.environ["AIRFLOW_CONN_UPS_DEFAULT"])
    connection["extra"]["timeout"] = [10, seconds]
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(connection))


FAULTS = {
    # Ship buys the label, then answers HTTP 500
    "500_after_label": ({"error_after_label_next": 1}, None),
    # Ship buys the label, then the connection drops without an answer
    "dropped_connection": ({"crash_after_label_next": 1}, None),
    # Ship buys the label and answers after 6 s; the client gives up reading after 2 s
    "read_timeout": ({"ship_answer_delay_ms": 6000}, 2.0),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_unknown_ship_outcome_buys_one_label_waits_uncertain_and_is_adopted(pipeline_env, monkeypatch, fault):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    knobs, read_timeout = FAULTS[fault]
    slot = 20 + 3 * list(FAULTS).index(fault)
    end = interval_end(slot)
    fast_lookups(pipeline_env)
    if read_timeout:
        ups_read_timeout(monkeypatch, read_timeout)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=[ORDER])
    sandbox.set_knobs("ups", reference_index_lag_seconds=INDEX_LAG, **knobs)
    dag = load_dag()
    ledger = Ledger(pipeline_env["ledger_url"])

    # run 1: Ship bought a label and we never heard of it; the index does not show it yet
    first = run_interval(dag, end)
    row = ledger.find_by_number(PIPELINE, ORDER)
    assert row.state is ShipmentState.LABEL_UNCERTAIN, (row.state, row.error)
    assert "a label may exist" in row.error and f"ml-connector shipments adopt {PIPELINE} {ORDER}" in row.error
    assert states(first)[("create_shipment", ORDER)] == "failed"  # red, not green-and-silent
    assert states(first)[("writeback", ORDER)] == "skipped"
    assert sandbox.counters("ups")["labels_by_reference"][ORDER] == 1

    # run 2: the same interval again; looked up again, still not indexed, nothing bought
    lookups = sandbox.counters("ups")["track_reference_requests"]
    second = dag.test(logical_date=end + timedelta(minutes=2))
    assert ledger.find_by_number(PIPELINE, ORDER).state is ShipmentState.LABEL_UNCERTAIN
    assert sandbox.counters("ups")["track_reference_requests"] > lookups
    assert states(second)[("create_shipment", ORDER)] == "failed"
    assert sandbox.counters("ups")["labels_by_reference"][ORDER] == 1

    # run 3: the next interval, after the order was touched in Business Central; the index has caught up
    sandbox.set_knobs("ups", clock_offset_seconds=INDEX_LAG + 60.0)
    place_orders(bc, end + timedelta(minutes=5), numbers=[ORDER])
    third = run_interval(dag, end + timedelta(minutes=15))
    row = ledger.find_by_number(PIPELINE, ORDER)
    assert row.state is ShipmentState.WRITTEN_BACK, (row.state, row.error)
    assert states(third)[("create_shipment", ORDER)] == "success"
    counters = sandbox.counters("ups")
    assert counters["labels_by_reference"][ORDER] == 1 and counters["labels_created"] == 1  # exactly one label
    assert bc_orders(bc)[ORDER]["packageTrackingNo"] == row.tracking_numbers[0]
    trail = ledger.audit_trail(row.id)
    assert [a["to_state"] for a in trail if a["from_state"] != a["to_state"]] == [
        "extracted", "address_ok", "label_requested", "label_uncertain", "labelled", "written_back"]
    assert [a["outcome"] for a in trail if a["to_state"] == "labelled"] == ["adopted"]


def test_f2_refused_lookups_then_an_erp_edit_buy_no_second_label(pipeline_env):
    """F2: the reference lookup is refused (a permanent error) while the label's outcome is unknown, then the
    order is edited in the ERP. It used to be quarantined (the fact lost), re-opened by the edit and bought
    again without a lookup."""
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(32)
    fast_lookups(pipeline_env)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=[ORDER])
    sandbox.set_knobs("ups", crash_after_label_next=1, reference_index_lag_seconds=INDEX_LAG,
                      reference_lookup_error_next=2)
    dag = load_dag()
    ledger = Ledger(pipeline_env["ledger_url"])

    run_interval(dag, end)  # the label is bought, the answer lost, the lookup refused
    row = ledger.find_by_number(PIPELINE, ORDER)
    assert row.state is ShipmentState.LABEL_UNCERTAIN and "TV1002" in row.error

    place_orders(bc, end + timedelta(minutes=5), numbers=[ORDER])  # the ERP edit
    run_interval(dag, end + timedelta(minutes=15))  # the lookup is refused again; not quarantined, not bought
    row = ledger.find_by_number(PIPELINE, ORDER)
    assert row.state is ShipmentState.LABEL_UNCERTAIN
    assert sandbox.counters("ups")["labels_by_reference"][ORDER] == 1

    sandbox.set_knobs("ups", clock_offset_seconds=INDEX_LAG + 60.0)
    place_orders(bc, end + timedelta(minutes=20), numbers=[ORDER])  # edited once more
    run_interval(dag, end + timedelta(minutes=30))
    row = ledger.find_by_number(PIPELINE, ORDER)
    assert row.state is ShipmentState.WRITTEN_BACK, (row.state, row.error)
    assert sandbox.counters("ups")["labels_by_reference"][ORDER] == 1
    assert sandbox.counters("ups")["ship_requests"] == 1
