"""Full runs of the syspro_ups DAG with dag.test() against the UPS and SYSPRO sandboxes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from tests.conftest import ups_connection
from tests.dags.conftest import (
    TRACK_AT_ONCE,
    interval_end,
    load_dag,
    run_interval,
    states,
    update_pipeline_settings,
    write_pipeline_settings,
)
from tests.erp.syspro.conftest import custom_forms, open_sessions, place, syspro_connection
from tests.erp.syspro.conftest import syspro_sandbox as syspro_sandbox  # noqa: F401 - a fixture

from ml_connector.ledger import Ledger, ShipmentState

PIPELINE = "syspro_ups"
# full DAG runs share one metadata DB per worker: keep them on one worker (make test uses --dist loadgroup)
pytestmark = pytest.mark.xdist_group("airflow_metadata_db")

GOOD = {"100201": ("INV", "100201"), "100202": ("INV", "100202"), "100203": ("INV", "100203"),
        "300101": ("POR", "300101")}
LONG = "GREENLEAF-GARDEN-CENTERS-INV-2026-110042"
BROKEN = {
    "100204": "no postal code",
    "100205": "shipment method 'PIGEON'",
    "100206": "UPS does not deliver to PO boxes",
    LONG: "is 40 characters; UPS reference numbers hold at most 35",
}


@pytest.fixture
def syspro_env(syspro_sandbox, airflow_db, tmp_path, monkeypatch):
    sandbox = syspro_sandbox
    sandbox.reset("ups")
    sandbox.reset("syspro")
    url = sandbox.url("syspro")
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(sandbox.url("ups")))
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT", syspro_connection(url))
    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    path = write_pipeline_settings(tmp_path, monkeypatch, PIPELINE, **TRACK_AT_ONCE)
    return {"sandbox": sandbox, "url": url, "ledger": Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"),
            "settings_path": path}


def test_run_labels_good_documents_writes_tracking_and_cost_and_quarantines_broken_ones(syspro_env):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    end = interval_end(21)
    place(url, end - timedelta(minutes=7), spacing_seconds=5)
    dr = run_interval(load_dag(PIPELINE), end)

    rows = {r.order_number: r for r in ledger.list(PIPELINE)}
    forms = custom_forms(url)
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    for number, key in GOOD.items():
        row = rows[number]
        assert row.state is ShipmentState.WRITTEN_BACK, (number, row.error)
        assert by_reference[number] == 1  # exactly one label per document
        form = forms[key]  # read back from SYSPRO
        assert form["TRACKNO"] == row.tracking_numbers[0]
        assert form["SHIPSTAT"] == "LABEL CREATED"
        amount, currency = row.charges.split()
        assert (form["SHIPCOST"], form["SHIPCURR"]) == (f"{Decimal(amount):.2f}", currency)
    assert rows["100202"].order.ship_to.name == "Jürgen Größe & Söhne <GmbH>"
    from ml_connector.ledger.costs import shipment_costs

    today = datetime.now(UTC).date()
    costs = {c["order_number"]: c for c in shipment_costs(ledger, PIPELINE, today - timedelta(days=1), today)}
    assert set(costs) == set(GOOD)
    for number, cost in costs.items():  # finance sees what was paid: UPS's negotiated total
        assert cost["basis"] == "negotiated" and Decimal(cost["amount"]) < Decimal(cost["published_amount"])
        assert forms[GOOD[number]]["SHIPCOST"] == f"{Decimal(cost['amount']):.2f}"
    for number, reason in BROKEN.items():
        row = rows[number]
        assert row.state is ShipmentState.QUARANTINED and reason in row.error, (number, row.error)
        assert number not in by_reference
        assert row.order.number == number and row.order.ship_to.lines  # the original details are kept
    unreadable = rows["100207"]  # no city: it never became an order; the error keeps SYSPRO's row
    assert unreadable.state is ShipmentState.QUARANTINED and "no city (ShipAddress3 is empty)" in unreadable.error
    assert '"CustomerName": "Lakeside Bistro & Bar"' in unreadable.error and "8 Shore Drive" in unreadable.error
    lanes = states(dr)
    for number in BROKEN:
        assert lanes[("validate_address", number)] == "failed"
    assert "000000000000420" not in rows  # SorMaster is not among the default tables
    assert open_sessions(url) == 0  # every e.net session was logged off
    counters = sandbox.counters("syspro")
    assert counters["logons"] == counters["logoffs"] >= 1 and counters["session_collisions"] == 0
    assert sandbox.validation_errors("ups") == []


def test_a_delivered_package_shows_in_the_status_field(syspro_env):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    end = interval_end(26)
    place(url, end - timedelta(days=3))
    place(url, end - timedelta(minutes=5), keys=["100201"])
    dag = load_dag(PIPELINE)
    run_interval(dag, end)
    row = ledger.find_by_number(PIPELINE, "100201")
    sandbox.advance_ups_package(row.tracking_numbers[0], "delivered")
    run_interval(dag, end + timedelta(minutes=15))  # poll_tracking of the next run
    assert ledger.find_by_number(PIPELINE, "100201").state is ShipmentState.DELIVERED
    assert custom_forms(url)[("INV", "100201")]["SHIPSTAT"].startswith("DELIVERED 20")
    assert open_sessions(url) == 0


def test_same_interval_again_buys_nothing_and_writes_nothing_new(syspro_env):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    end = interval_end(22)
    place(url, end - timedelta(minutes=5))
    dag = load_dag(PIPELINE)
    run_interval(dag, end)
    labels = sandbox.counters("ups")["labels_created"]
    assert labels == len(GOOD)
    dag.test(logical_date=end + timedelta(minutes=2))  # the same interval again
    assert sandbox.counters("ups")["labels_created"] == labels
    assert {ledger.find_by_number(PIPELINE, n).state for n in GOOD} == {ShipmentState.WRITTEN_BACK}
    assert open_sessions(url) == 0


def test_a_session_that_expires_mid_run_is_renewed_once_and_the_run_finishes(syspro_env):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    end = interval_end(23)
    place(url, end - timedelta(days=3))
    place(url, end - timedelta(minutes=5), keys=["100201", "100203"])
    # the writeback lanes' first business-object call works, then SYSPRO ends the session (idle timeout)
    sandbox.set_knobs("syspro", expire_sessions_after_calls=1)
    run_interval(load_dag(PIPELINE), end)
    assert {ledger.find_by_number(PIPELINE, n).state for n in ("100201", "100203")} == {ShipmentState.WRITTEN_BACK}
    counters = sandbox.counters("syspro")
    assert counters["sessions_expired"] == 1 and counters["expired_session_calls"] == 1
    assert open_sessions(url) == 0
    forms = custom_forms(url)
    assert forms[("INV", "100201")]["TRACKNO"] and forms[("INV", "100203")]["TRACKNO"]


def test_a_writeback_failing_halfway_logs_off_keeps_the_label_and_the_next_run_finishes(syspro_env):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    end = interval_end(24)
    place(url, end - timedelta(days=3))
    place(url, end - timedelta(minutes=5), keys=["100201"])
    # SYSPRO's answer declares entities (a billion-laughs payload): refused, never expanded
    sandbox.set_knobs("syspro", malicious_answer_next=5)
    dag = load_dag(PIPELINE)
    dr = run_interval(dag, end)
    row = ledger.find_by_number(PIPELINE, "100201")
    assert row.state is ShipmentState.LABELLED and "declares a DTD or entities" in row.error
    assert states(dr)[("writeback", "100201")] == "failed"
    assert "boom" not in row.error
    assert open_sessions(url) == 0  # logged off although the task failed halfway

    sandbox.set_knobs("syspro", malicious_answer_next=0)
    run_interval(dag, end + timedelta(minutes=15))  # the next run re-queues the labelled row
    row = ledger.find_by_number(PIPELINE, "100201")
    assert row.state is ShipmentState.WRITTEN_BACK
    assert sandbox.counters("ups")["labels_by_reference"]["100201"] == 1
    assert custom_forms(url)[("INV", "100201")]["TRACKNO"] == row.tracking_numbers[0]
    assert open_sessions(url) == 0


def test_wrong_operator_password_fails_the_extract_free_of_sessions_and_quarantines_nothing(syspro_env, monkeypatch):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    end = interval_end(25)
    place(url, end - timedelta(days=3))
    place(url, end - timedelta(minutes=5), keys=["100201"])
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT", syspro_connection(url, password="wrong-password"))
    dr = run_interval(load_dag(PIPELINE), end)
    # extraction reads OData (its own Basic credentials); the e.net logon fails at write-back
    row = ledger.find_by_number(PIPELINE, "100201")
    assert row.state is ShipmentState.LABELLED  # a configuration error quarantines nothing; the label is kept
    assert states(dr)[("writeback", "100201")] == "failed"
    assert states(dr)[("report", "-1")] == "failed"
    assert open_sessions(url) == 0 and sandbox.counters("syspro")["logon_errors"] >= 1


def test_no_syspro_secret_in_xcoms_logs_or_the_ledger(syspro_env, caplog):
    import logging
    import os

    import sqlalchemy as sa

    url, ledger = syspro_env["url"], syspro_env["ledger"]
    end = interval_end(27)
    place(url, end - timedelta(days=3))
    place(url, end - timedelta(minutes=5), keys=["100201", "100204"])
    caplog.set_level(logging.DEBUG)
    dr = run_interval(load_dag(PIPELINE), end)
    conn = json.loads(os.environ["AIRFLOW_CONN_SYSPRO_DEFAULT"])
    import requests

    guids = requests.get(f"{url}/_sandbox/syspro/issued_sessions", timeout=10).json()
    assert guids  # the write-back logged on
    forbidden = [conn["password"], conn["extra"]["odata_password"], *guids]

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.scalars(sa.select(XComModel).where(XComModel.dag_id == PIPELINE,
                                                           XComModel.run_id == dr.run_id)).all()
        xcom_text = " ".join(json.dumps(x.value, default=str) for x in xcoms)
    with ledger.read() as db:
        ledger_text = " ".join(json.dumps([dict(r._mapping) for r in db.execute(sa.text(f"SELECT * FROM {t}"))],
                                          default=str)
                               for t in ("ml_shipments", "ml_audit_log"))
    assert "100201" in xcom_text and "Logon -> 200" in caplog.text
    for value in forbidden:
        assert value not in xcom_text and value not in ledger_text and value not in caplog.text


def test_backfill_of_two_past_days_processes_each_days_documents_once(syspro_env):
    sandbox, url, ledger = syspro_env["sandbox"], syspro_env["url"], syspro_env["ledger"]
    path = syspro_env["settings_path"]
    update_pipeline_settings(path, PIPELINE, schedule="0 0 * * *")
    dag = load_dag(PIPELINE)
    today = interval_end(0).replace(hour=0, minute=0)
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    place(url, today - timedelta(days=9))
    place(url, day1 + timedelta(hours=10), keys=["100201", "300101"])
    place(url, day2 + timedelta(hours=15), keys=["100202"])

    first = dag.test(logical_date=day2 + timedelta(minutes=1))   # owns [day1, day2)
    second = dag.test(logical_date=today + timedelta(minutes=1))  # owns [day2, today)
    assert (first.data_interval_start, second.data_interval_start) == (day1, day2)
    assert {r.order_number for r in ledger.list(PIPELINE)} == {"100201", "300101", "100202"}
    assert sandbox.counters("ups")["labels_created"] == 3
    dag.test(logical_date=day2 + timedelta(minutes=2))  # reprocess the first day
    assert sandbox.counters("ups")["labels_created"] == 3
    assert {r.state for r in ledger.list(PIPELINE)} == {ShipmentState.WRITTEN_BACK}
    assert open_sessions(url) == 0
