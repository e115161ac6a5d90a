"""Runs that tell the truth: a run whose pipeline failed, or that quarantined new orders, is red at `report`;
a run that only sees old quarantines again is green. Full runs with dag.test() against the sandboxes."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import yaml
from tests.dags.conftest import PIPELINE, interval_end, load_dag, place_orders, run_interval, states

from ml_connector.ledger import Ledger, ShipmentState

# full DAG runs share one metadata DB per worker: keep them on one worker (make test uses --dist loadgroup)
pytestmark = pytest.mark.xdist_group("airflow_metadata_db")

BROKEN = {"S-ORD101006", "S-ORD101007", "S-ORD101008", "S-ORD101014"}


def report_of(dr) -> dict:
    """The `report` XCom of a run (pushed whether the run is green or red)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dr.run_id, key="report", task_ids="report",
                                                 dag_ids=dr.dag_id)).first()
        assert row is not None, "the report step pushed no summary"
        return XComModel.deserialize_value(row)


def test_extract_failing_fails_the_run_at_report(pipeline_env, monkeypatch):
    end = interval_end(30)
    place_orders(pipeline_env["bc"], end - timedelta(minutes=5))
    good = json.loads(os.environ["AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps({**good, "password": "wrong"}))
    dr = run_interval(load_dag(), end)
    assert states(dr)[("extract_orders", "-1")] == "failed"
    assert states(dr)[("report", "-1")] == "failed"
    assert dr.state == "failed"
    summary = report_of(dr)
    assert any(f.startswith("extract_orders failed") for f in summary["failures"]), summary
    assert summary["counts"]["seen"] is None and summary["quarantined"] == []


def test_a_new_quarantine_fails_the_run_at_report_and_seeing_it_again_does_not(pipeline_env):
    sandbox = pipeline_env["sandbox"]
    end = interval_end(31)
    place_orders(pipeline_env["bc"], end - timedelta(minutes=5))
    dag = load_dag()
    first = run_interval(dag, end)
    lanes = states(first)
    assert first.state == "failed" and lanes[("report", "-1")] == "failed"
    assert lanes[("extract_orders", "-1")] == "success"
    summary = report_of(first)
    assert summary["failures"] == []  # red lanes of quarantined orders are not pipeline failures
    assert {o["order"] for o in summary["quarantined"]} == BROKEN
    assert all(o["reason"] for o in summary["quarantined"])
    assert summary["counts"] == {"seen": 11, "labelled": 7, "written_back": 7, "quarantined": 4, "uncertain": 0}
    labels = sandbox.counters("ups")["labels_created"]

    # the same interval again: the broken orders are seen again (their lanes stay red), nothing is new
    second = dag.test(logical_date=end + timedelta(minutes=2))
    lanes = states(second)
    assert {lanes[("validate_address", n)] for n in BROKEN} == {"failed"}
    assert second.state == "success" and lanes[("report", "-1")] == "success"
    summary = report_of(second)
    assert summary["quarantined"] == [] and summary["failures"] == []
    assert sandbox.counters("ups")["labels_created"] == labels


def test_quarantines_keep_the_run_green_when_fail_run_on_quarantine_is_off(pipeline_env):
    path = pipeline_env["settings_path"]
    settings = yaml.safe_load(path.read_text())
    settings[PIPELINE]["fail_run_on_quarantine"] = False
    path.write_text(yaml.safe_dump(settings))
    end = interval_end(32)
    place_orders(pipeline_env["bc"], end - timedelta(days=5))
    place_orders(pipeline_env["bc"], end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101006"])
    dr = run_interval(load_dag(), end)
    assert dr.state == "success"
    assert [o["order"] for o in report_of(dr)["quarantined"]] == ["S-ORD101006"]


def test_a_lane_failing_on_configuration_fails_the_run_and_the_fix_turns_it_green(pipeline_env, monkeypatch):
    end = interval_end(35)
    place_orders(pipeline_env["bc"], end - timedelta(days=5))
    place_orders(pipeline_env["bc"], end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101002"])
    good = json.loads(os.environ["AIRFLOW_CONN_UPS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps({**good, "password": "wrong-secret"}))
    dag = load_dag()
    dr = run_interval(dag, end)
    assert states(dr)[("validate_address", "S-ORD101001")] == "failed"
    assert dr.state == "failed"
    failures = report_of(dr)["failures"]
    assert any("process_order.validate_address[S-ORD101001] failed (configuration)" in f for f in failures), failures
    assert report_of(dr)["quarantined"] == []

    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(good))
    fixed = run_interval(dag, end + timedelta(minutes=15))  # re-queues the unfinished orders
    assert fixed.state == "success"
    assert report_of(fixed)["counts"]["written_back"] == 2
    ledger = Ledger(pipeline_env["ledger_url"])
    assert {r.state for r in ledger.list(PIPELINE)} == {ShipmentState.WRITTEN_BACK}
