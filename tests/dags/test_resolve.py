"""The ml_connector_resolve DAG: a person's decision from the Trigger form's params, audited with who and why,
and what the business_central_ups runs do after it (write back an adopted label; rebuy, then void the
abandoned label when it turns up; take a released quarantine again)."""

from __future__ import annotations

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
from tests.dags.test_uncertain import INDEX_LAG, ORDER, fast_lookups

from ml_connector.ledger import Ledger, ShipmentState
from ml_connector.operators.resolve import DAG_ID

pytestmark = pytest.mark.xdist_group("airflow_metadata_db")


def resolve(**conf):
    """One run of the resolve DAG, as the Trigger form starts it."""
    dag = load_dag(DAG_ID)
    return dag.test(run_conf={"pipeline": PIPELINE, **conf})


def decision_audit(ledger: Ledger, row_id: int) -> dict:
    return [a for a in ledger.audit_trail(row_id) if a["step"] == "decision"][-1]


def uncertain_order(pipeline_env, end):
    """S-ORD101001 bought by a Ship call that answered 500; the index does not show the label yet."""
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    fast_lookups(pipeline_env)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=[ORDER])
    sandbox.set_knobs("ups", error_after_label_next=1, reference_index_lag_seconds=INDEX_LAG)
    dag = load_dag()
    run_interval(dag, end)
    ledger = Ledger(pipeline_env["ledger_url"])
    row = ledger.find_by_number(PIPELINE, ORDER)
    assert row.state is ShipmentState.LABEL_UNCERTAIN
    return dag, ledger, row


def test_the_resolve_dag_has_a_form_for_each_decision():
    dag = load_dag(DAG_ID)
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule None: triggered by hand only
    assert dag.params.get_param("action").schema["enum"] == ["adopt", "rebuy", "retry"]
    assert PIPELINE in dag.params.get_param("pipeline").schema["enum"]
    assert {"order", "tracking_numbers", "reason", "by"} <= set(dag.params.keys())
    assert dag.default_args["owner"] == "ml-connector" and "ml-connector" in dag.tags


def test_adopt_from_the_form_then_the_next_run_writes_it_back(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(35)
    dag, ledger, row = uncertain_order(pipeline_env, end)
    number = sandbox.control("ups", "GET", "ups/shipments")[0]["packages"][0]["tracking_number"]

    dr = resolve(action="adopt", order=ORDER, tracking_numbers=number.lower(), reason="UPS shipping history",
                 by="ops-ada")
    assert states(dr)[("resolve", "-1")] == "success"
    row = ledger.get(row.id)
    assert row.state is ShipmentState.LABELLED and row.tracking_numbers == [number]
    audit = decision_audit(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"]) == ("adopt", "ops-ada",
                                                                            "UPS shipping history")
    assert audit["detail"]["via"].startswith(f"airflow {DAG_ID} ")

    run_interval(dag, end + timedelta(minutes=15))
    assert ledger.get(row.id).state is ShipmentState.WRITTEN_BACK
    assert bc_orders(bc)[ORDER]["packageTrackingNo"] == number
    assert sandbox.counters("ups")["labels_by_reference"][ORDER] == 1


def test_rebuy_from_the_form_buys_anew_and_the_abandoned_label_is_voided_when_it_turns_up(pipeline_env):
    sandbox = pipeline_env["sandbox"]
    end = interval_end(38)
    dag, ledger, row = uncertain_order(pipeline_env, end)
    abandoned = sandbox.control("ups", "GET", "ups/shipments")[0]["packages"][0]["tracking_number"]

    resolve(action="rebuy", order=ORDER, reason="UPS support found no label")
    audit = decision_audit(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"]) == (
        "rebuy", "dag_test", "UPS support found no label")  # who: the user who triggered the run

    dag.test(logical_date=end + timedelta(minutes=3))  # looks once more (still not indexed), then buys
    row = ledger.get(row.id)
    assert row.state is ShipmentState.WRITTEN_BACK and row.tracking_numbers != [abandoned]
    assert sandbox.counters("ups")["labels_by_reference"][ORDER] == 2
    assert row.next_lookup_at is not None  # watching for the abandoned label

    sandbox.set_knobs("ups", clock_offset_seconds=INDEX_LAG + 60.0)  # the abandoned label is indexed now
    third = run_interval(dag, end + timedelta(minutes=15))
    assert states(third)[("create_shipment", ORDER)] == "success"
    shipments = {s["shipment_id"]: s for s in sandbox.control("ups", "GET", "ups/shipments")}
    assert shipments[abandoned]["voided"] and not shipments[row.tracking_numbers[0]]["voided"]
    assert sandbox.counters("ups")["voids"] == 1
    voids = [a for a in ledger.audit_trail(row.id)
             if a["step"] == "void_abandoned_label" and a["outcome"] == "voided"]
    assert [v["detail"]["tracking_number"] for v in voids] == [abandoned]
    assert ledger.get(row.id).tracking_numbers == row.tracking_numbers


def test_retry_from_the_form_releases_a_quarantine_once_the_settings_are_fixed(pipeline_env):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    end = interval_end(41)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=["S-ORD101007"])  # ship method PIGEON: not mapped
    dag = load_dag()
    run_interval(dag, end)
    ledger = Ledger(pipeline_env["ledger_url"])
    row = ledger.find_by_number(PIPELINE, "S-ORD101007")
    assert row.state is ShipmentState.QUARANTINED

    path = pipeline_env["settings_path"]  # the fix: map PIGEON to Ground
    settings = yaml.safe_load(path.read_text())
    settings[PIPELINE]["ship_method_map"]["PIGEON"] = "03"
    path.write_text(yaml.safe_dump(settings))
    resolve(action="retry", order="S-ORD101007", reason="PIGEON mapped to Ground", by="ops-grace")
    audit = decision_audit(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["to_state"]) == ("retry", "ops-grace", "extracted")

    run_interval(load_dag(), end + timedelta(minutes=15))
    assert ledger.get(row.id).state is ShipmentState.WRITTEN_BACK
    assert sandbox.counters("ups")["labels_by_reference"]["S-ORD101007"] == 1


def test_a_refused_decision_fails_the_run_with_the_reason(pipeline_env):
    dr = resolve(action="rebuy", order="S-NOT-THERE", reason="x")
    assert states(dr)[("resolve", "-1")] == "failed"
