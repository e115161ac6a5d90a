"""The DAG factory: one DAG per pipeline, named from the registry, with the task names users know."""

from __future__ import annotations

import yaml
from airflow.sdk import CronDataIntervalTimetable

from ml_connector.pipelines import erp_ups_dag


def test_the_factory_builds_the_five_tasks_with_registry_names(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"bc_east": {"erp": "business_central", "schedule": "0 * * * *",
                                                "tags": ["east"], "retries": 4}}))
    dag = erp_ups_dag("bc_east", settings_file=path)
    assert {t.task_id for t in dag.tasks} == {
        "extract_orders", "process_order.validate_address", "process_order.create_shipment",
        "process_order.writeback", "poll_tracking", "report"}
    assert dag.description == "Dynamics 365 Business Central -> UPS labels and tracking"
    assert set(dag.tags) == {"ml-connector", "business_central", "ups", "east"}
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.max_active_runs == 1
    assert dag.default_args["retries"] == 4 and dag.default_args["retry_exponential_backoff"] == 2.0
    assert "Dynamics 365 Business Central -> UPS" in dag.doc_md and "bc_east" in dag.doc_md
    assert dag.get_task("poll_tracking").trigger_rule == "all_done"


CARRIER_STEPS = {"process_order.validate_address", "process_order.create_shipment", "poll_tracking"}
ERP_STEPS = {"extract_orders", "process_order.writeback"}


def test_the_factory_puts_each_step_in_the_pool_of_the_api_it_calls(tmp_path):
    """carrier_pool: the steps that call UPS; erp_pool: extract_orders and writeback; one slot each; report
    calls no API. The pools survive serialization (the scheduler reads the serialized DAG)."""
    from airflow.serialization.serialized_objects import DagSerialization

    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"bc_east": {"erp": "business_central", "carrier_pool": "ml_connector_ups",
                                                "erp_pool": "ml_connector_business_central"}}))
    dag = erp_ups_dag("bc_east", settings_file=path)
    expected = {**{t: "ml_connector_ups" for t in CARRIER_STEPS},
                **{t: "ml_connector_business_central" for t in ERP_STEPS}, "report": "default_pool"}
    assert {t.task_id: t.pool for t in dag.tasks} == expected
    assert {t.pool_slots for t in dag.tasks} == {1}
    serialized = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert {t.task_id: t.pool for t in serialized.tasks} == expected
    assert {t.pool_slots for t in serialized.tasks} == {1}


def test_without_pool_settings_every_step_runs_in_the_default_pool(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"bc_east": {"erp": "business_central"}}))
    dag = erp_ups_dag("bc_east", settings_file=path)
    assert {t.pool for t in dag.tasks} == {"default_pool"}
    # one pool set, the other not: only its steps move
    dag = erp_ups_dag("bc_east", settings_file=path, carrier_pool="ups_shared")
    assert {t.task_id for t in dag.tasks if t.pool == "ups_shared"} == CARRIER_STEPS
    assert {t.pool for t in dag.tasks if t.task_id not in CARRIER_STEPS} == {"default_pool"}
