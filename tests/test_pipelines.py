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
