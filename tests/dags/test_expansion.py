"""The DAG shape the scheduler can always expand: no run state leaves a mapped task of `process_order` to be
expanded without its input (Airflow logs "Cannot expand ... missing upstream values: ['lane']" and marks the task
upstream_failed when that happens).

The runs go through the scheduler's own decisions (``DagRun.update_state``, as ``dag.test()`` and the scheduler
call it), with tasks run in-process; a probe around ``TaskMap.expand_mapped_task`` records every expansion that
found its input missing. Covered: a failed, an empty and a successful ``extract_orders``; clearing the whole run,
``extract_orders`` alone, or ``extract_orders`` with the lane steps but not ``validate_address`` after a failed
run; re-running a successful run with its downstream (what a backfill with reprocessing does). A canary DAG with a
mapped step that can be ready before its mapping source ran (a one_done rule) shows that the probe catches it.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from tests.dags.conftest import interval_end, load_dag, place_orders, run_interval, states

pytestmark = pytest.mark.xdist_group("airflow_metadata_db")

GROUP_STEPS = ("process_order.validate_address", "process_order.create_shipment", "process_order.writeback")


@pytest.fixture
def missing_inputs(monkeypatch) -> list[tuple[str, str, list[str]]]:
    """Every expansion whose upstream values were missing: ``(task_id, run_id, missing)``."""
    from airflow.models.expandinput import NotFullyPopulated
    from airflow.models.taskmap import TaskMap
    from airflow.serialization.definitions import mappedoperator

    seen: list[tuple[str, str, list[str]]] = []
    original = TaskMap.expand_mapped_task.__func__

    def probe(cls, task, run_id, *, session):
        try:
            mappedoperator.get_mapped_ti_count(task, run_id, session=session)
        except NotFullyPopulated as exc:
            seen.append((task.task_id, run_id, sorted(exc.missing)))
        except Exception:  # NotMapped and the like: expand_mapped_task deals with them
            pass
        return original(cls, task, run_id, session=session)

    monkeypatch.setattr(TaskMap, "expand_mapped_task", classmethod(probe))
    return seen


def drive(dag, run_id: str):
    """Take an existing run to its end the way ``dag.test()`` does (scheduler decisions, tasks in-process)."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, TaskInstanceState

    session = settings.Session()
    dr = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id).one()
    dr.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    dr.state = DagRunState.RUNNING
    session.commit()
    for _ in range(200):
        if dr.state != DagRunState.RUNNING:
            break
        session.expire_all()
        schedulable, _ = dr.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
            ti.scheduled_dttm = timezone.utcnow()
        session.commit()
        for ti in [t for t in dr.get_task_instances(session=session) if t.state == TaskInstanceState.SCHEDULED]:
            try:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
            except Exception:  # a failed task is a state, as in dag.test()
                pass
    else:
        raise AssertionError(f"run {run_id} did not finish")
    return dr


def clear(dag_id: str, run_id: str, task_ids) -> None:
    """What the UI's Clear does to the chosen task instances of a run."""
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance, clear_task_instances

    session = settings.Session()
    tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                                             TaskInstance.task_id.in_(list(task_ids))).all()
    assert tis
    clear_task_instances(tis, session)
    session.commit()


def wrong_bc_secret(monkeypatch) -> dict:
    good = json.loads(os.environ["AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps({**good, "password": "wrong"}))
    return good


def test_every_lane_step_waits_for_all_its_upstreams_and_the_mapping_source_is_one_of_them():
    """The scheduler's view of the DAG. A step of the mapped group is ready only when all its upstream tasks are
    done (all_success or all_done, never a one_* rule), and extract_orders is one of them: so no step is ever
    ready before extract_orders finished, and then Airflow either has the lanes or marks the step
    upstream_failed / skipped without expanding it."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(load_dag()))
    steps = [t for t in dag.tasks if t.get_closest_mapped_task_group() is not None]
    assert sorted(t.task_id for t in steps) == sorted(GROUP_STEPS)
    for task in steps:
        assert task.trigger_rule in ("all_success", "all_done"), task.task_id
        sources = {op.task_id for op in task.get_closest_mapped_task_group().iter_mapped_dependencies()}
        assert sources == {"extract_orders"} and sources <= set(task.upstream_task_ids), task.task_id


def test_a_failed_or_empty_extract_never_expands_a_lane_without_input(pipeline_env, monkeypatch, missing_inputs):
    dag = load_dag()
    end = interval_end(40)
    place_orders(pipeline_env["bc"], end - timedelta(days=5))  # nothing in the intervals: no lanes
    good = wrong_bc_secret(monkeypatch)  # before any token is cached in the ledger
    failed = run_interval(dag, end)
    assert {states(failed)[(t.split(".")[-1], "-1")] for t in GROUP_STEPS} == {"upstream_failed"}
    assert failed.state == "failed"

    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps(good))
    empty = run_interval(dag, end + timedelta(minutes=15))
    assert {states(empty)[(t.split(".")[-1], "-1")] for t in GROUP_STEPS} == {"skipped"}
    assert empty.state == "success"
    assert missing_inputs == []


@pytest.mark.parametrize("cleared", [
    ("extract_orders", *GROUP_STEPS, "poll_tracking", "report"),  # the whole run
    ("extract_orders",),  # the failed task alone
    ("extract_orders", "process_order.create_shipment", "process_order.writeback", "report"),  # not validate
], ids=["whole-run", "extract-only", "extract-and-all-done-steps"])
def test_clearing_a_failed_run_after_the_fix_never_expands_a_lane_without_input(
        pipeline_env, monkeypatch, missing_inputs, cleared):
    dag = load_dag()
    end = interval_end(42)
    place_orders(pipeline_env["bc"], end - timedelta(minutes=5))
    good = wrong_bc_secret(monkeypatch)
    failed = run_interval(dag, end)
    assert states(failed)[("extract_orders", "-1")] == "failed"

    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps(good))
    clear(dag.dag_id, failed.run_id, cleared)
    again = drive(dag, failed.run_id)
    lanes = states(again)
    assert lanes[("extract_orders", "-1")] == "success"
    assert missing_inputs == []
    if "process_order.validate_address" in cleared:
        assert lanes[("writeback", "S-ORD101001")] == "success"
    else:  # a step that was not cleared keeps its state; the lanes that ran found nothing ready
        assert lanes[("validate_address", "-1")] == "upstream_failed"
    assert all(state in ("success", "failed", "skipped", "upstream_failed", "removed")
               for state in lanes.values()), lanes


def test_rerunning_a_finished_run_with_its_downstream_expands_every_lane_again(pipeline_env, missing_inputs):
    """What a backfill with reprocess behaviour 'completed' or 'failed' does to an existing run."""
    dag = load_dag()
    end = interval_end(44)
    place_orders(pipeline_env["bc"], end - timedelta(days=5))
    place_orders(pipeline_env["bc"], end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101006"])
    first = run_interval(dag, end)
    assert states(first)[("writeback", "S-ORD101001")] == "success"
    labels = pipeline_env["sandbox"].counters("ups")["labels_created"]
    clear(dag.dag_id, first.run_id, [t.task_id for t in dag.tasks])
    again = drive(dag, first.run_id)
    assert missing_inputs == []
    # S-ORD101001 was written back (which moved it out of the interval), S-ORD101006 is still quarantined: the
    # re-run has one lane where the first run had two, and the extra lane's tasks are marked removed
    assert sorted(ti.map_index for ti in again.get_task_instances()
                  if ti.task_id == "process_order.validate_address" and ti.state != "removed") == [0]
    assert all(state in ("success", "failed", "skipped", "removed") for state in states(again).values())
    assert pipeline_env["sandbox"].counters("ups")["labels_created"] == labels


CANARY = """
from datetime import UTC, datetime

from airflow.sdk import DAG, task, task_group

with DAG("ml_connector_expansion_canary", schedule=None, start_date=datetime(2026, 11, 1, tzinfo=UTC)) as dag:
    @task
    def gate() -> int:
        return 2

    @task
    def source(count: int) -> list[int]:
        return list(range(count))

    @task
    def step(item: int) -> int:
        return item

    @task(trigger_rule="one_done")
    def late() -> None:
        return None

    opened = gate()

    @task_group
    def group(item):
        step(item)
        opened >> late()  # ready as soon as one upstream is done: `gate`, before the source ran

    group.expand(item=source(opened))
"""


def test_the_probe_catches_an_all_done_step_that_does_not_wait_for_the_mapping_source(airflow_db, tmp_path,
                                                                                      missing_inputs):
    """Canary: the shape the structural test forbids. A step of a mapped group that is ready once one upstream is
    done becomes ready while the mapping source has still to run, and is expanded without input."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    (tmp_path / "canary.py").write_text(CANARY)
    bag = DagBag(dag_folder=str(tmp_path / "canary.py"))
    assert bag.import_errors == {}
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    bag.dags["ml_connector_expansion_canary"].test()
    assert [(t, m) for t, _run, m in missing_inputs] == [("group.late", ["item"])]
