"""Full runs of the exact_online_ups DAG with dag.test() against the UPS and Exact Online sandboxes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from tests.conftest import ups_connection
from tests.dags.conftest import (
    TRACK_AT_ONCE,
    interval_end,
    load_dag,
    run_interval,
    states,
    write_pipeline_settings,
)
from tests.erp.exact_online.conftest import exact_connection

from ml_connector.ledger import Ledger, ShipmentState
from ml_connector_sandbox.exact_online.seed import BROKEN, GOOD

PIPELINE = "exact_online_ups"
pytestmark = pytest.mark.xdist_group("airflow_metadata_db")
#: what the ledger says for each broken delivery (the field named)
REASONS = {"5005": "GrossWeight", "5006": "DeliveryAddress", "5007": "unit value above zero",
           "5008": "'PIGEON'"}


@pytest.fixture(scope="module")
def exact_sandbox():
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["ups", "exact_online"]) as server:
        yield server


@pytest.fixture
def exact_env(exact_sandbox, airflow_db, tmp_path, monkeypatch):
    exact_sandbox.reset("ups")
    exact_sandbox.reset("exact_online")
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(exact_sandbox.url("ups")))
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT", exact_connection(exact_sandbox.url("exact_online")))
    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    write_pipeline_settings(tmp_path, monkeypatch, PIPELINE, **TRACK_AT_ONCE)
    return {"sandbox": exact_sandbox, "exact": exact_sandbox.url("exact_online"),
            "ledger_url": f"sqlite:///{tmp_path / 'ledger.db'}"}


def deliveries(url: str) -> dict[str, dict]:
    return {d["number"]: d for d in requests.get(f"{url}/_sandbox/exact_online/deliveries", timeout=10).json()}


def place(url: str, when, numbers=None) -> None:
    requests.post(f"{url}/_sandbox/exact_online/touch", json={"modified_at": when.isoformat(), "numbers": numbers},
                  timeout=10).raise_for_status()


def test_run_labels_good_deliveries_once_and_quarantines_broken_ones(exact_env):
    sandbox, exact = exact_env["sandbox"], exact_env["exact"]
    end = interval_end(11)
    place(exact, end - timedelta(minutes=7))
    dag = load_dag(PIPELINE)
    dr = run_interval(dag, end)

    ledger = Ledger(exact_env["ledger_url"])
    rows = {r.order_number: r for r in ledger.list(PIPELINE)}
    erp = deliveries(exact)
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    for number in GOOD:
        row = rows[number]
        assert row.state is ShipmentState.WRITTEN_BACK, (number, row.error)
        assert by_reference[number] == 1  # one label per delivery
        assert erp[number]["TrackingNumber"] == row.tracking_numbers[0]  # read back from Exact
    for number in BROKEN:
        assert rows[number].state is ShipmentState.QUARANTINED, (number, rows[number].state)
        assert REASONS[number] in rows[number].error, (number, rows[number].error)
        assert number not in by_reference
    assert "5009" not in rows  # already had a tracking number
    assert sandbox.validation_errors("ups") == []  # the Swiss and US ones went with a valid commercial invoice
    lanes = states(dr)
    assert lanes[("writeback", "5003")] == "success"
    counters = sandbox.counters("exact_online")
    assert counters["token_refreshes"] == 1 and counters["token_refused"] == 0
    assert counters["rate_limited"] == 0

    # UPS scans move on: the status lands on the goods delivery, delivery confirmation closes it
    sandbox.advance_ups_package(rows["5001"].tracking_numbers[0], "delivered")
    sandbox.advance_ups_package(rows["5003"].tracking_numbers[0], "in_transit")
    run_interval(dag, end + timedelta(minutes=15))
    erp = deliveries(exact)
    assert erp["5001"]["Remarks"].startswith("UPS delivered") and rows["5001"].tracking_numbers[0] in \
        erp["5001"]["Remarks"]
    assert erp["5003"]["Remarks"].startswith("UPS in transit")
    assert Ledger(exact_env["ledger_url"]).find_by_number(PIPELINE, "5001").state is ShipmentState.DELIVERED
    assert sandbox.counters("ups")["labels_created"] == len(GOOD)  # the second run bought nothing


def test_a_refused_field_is_recorded_with_exacts_message(exact_env):
    sandbox, exact = exact_env["sandbox"], exact_env["exact"]
    end = interval_end(12)
    place(exact, end - timedelta(days=3))
    place(exact, end - timedelta(minutes=5), numbers=["5001"])
    sandbox.set_knobs("exact_online", refuse_fields="TrackingNumber")
    run_interval(load_dag(PIPELINE), end)
    row = Ledger(exact_env["ledger_url"]).find_by_number(PIPELINE, "5001")
    assert row.state is ShipmentState.LABELLED
    assert "Field 'TrackingNumber' cannot be changed" in row.error
