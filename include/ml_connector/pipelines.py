"""The DAG factory: one ERP -> carrier DAG from one pipeline's settings.

::

    extract_orders -> process_order (mapped task group, one lane per order or batch of orders)
                        validate_address -> create_shipment -> writeback
                   -> poll_tracking (trigger_rule all_done)
                   -> report (trigger_rule all_done; the only leaf, so the run's state is its verdict)

Every task of ``process_order`` takes its lane from ``extract_orders``' output, which makes ``extract_orders``
a direct upstream of each of them. So the group's ``all_done`` tasks can only become ready once
``extract_orders`` has finished: if it failed or was skipped, Airflow marks them upstream_failed or skipped
before expanding anything; if it succeeded, it pushed the lanes before it was marked a success. No run state
leaves a mapped task to be expanded without its input (tests/dags/test_expansion.py checks it); only rows
deleted under a running scheduler can (Airflow 3.3.2's backfill creation on SQLite does that: README, "Backfill
a missed day").

Pools: ``validate_address``, ``create_shipment`` and ``poll_tracking`` run in the ``carrier_pool`` setting's
Airflow pool, ``extract_orders`` and ``writeback`` in the ``erp_pool`` one (one slot each; unset: default_pool),
so every DAG naming a pool shares its slots. A named pool must exist: the scheduler never runs a task whose
pool does not (README, "Sizing a bigger deployment").

Building a DAG touches no network and no database (it only validates settings), so DAG parsing stays fast.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, task_group

from ml_connector import registry
from ml_connector.operators import (
    CreateShipmentOperator,
    ExtractOrdersOperator,
    PollTrackingOperator,
    ValidateAddressOperator,
    WritebackOperator,
)
from ml_connector.operators.base import RETRY_POLICY, retry_delays
from ml_connector.operators.report import ReportOperator
from ml_connector.settings import PipelineSettings, load_settings

DOC = """\
### {erp_name} -> {carrier_name}

Every {schedule!r} ({timezone}) this DAG reads the released orders modified in the run's data interval
(minus {overlap} min of overlap), buys one {carrier_name} label per order and writes the tracking number back on the order;
`poll_tracking` then moves the delivery status along from {carrier_name} scans.

* **Lanes**: each map index of `process_order` is one order (or one of {parallel_lanes} batches when a run has
  more than {lane_per_order_up_to} orders), named after its order number(s). Lanes take turns at each API's
  in-flight budget ({api_budget} calls at once per connection, shared with every DAG using it). A red lane names each failed order and why; the
  ledger row of a bad order is `quarantined` with the same reason and is tried again once the order changes
  in the ERP.
* **Red or green**: `report` runs last and fails the run when the pipeline failed (orders could not be read,
  a connection or setting is wrong, an API stayed down, the ledger is unreachable){quarantine_rule}. Its log
  lists every order with its reason and the counts (seen, labelled, written back, quarantined, uncertain).
* **Exactly once**: re-running an interval, clearing a task or backfilling never buys a second label: the
  ledger (`{ledger}`) records each label before anything else happens.
* **Backfill a missed day**: `airflow backfill create --dag-id {dag_id} --from-date DAY --to-date DAY`
  (the DAG must be unpaused for backfill runs to start).
* Connections: `{erp_conn}`, `{carrier_conn}`, `{ledger}`. Settings: `include/pipelines.yaml`, key `{dag_id}`.
"""


def build_erp_ups_dag(dag_id: str, settings: PipelineSettings, **dag_kwargs: Any) -> DAG:
    """Build the DAG for one ERP -> carrier pipeline (the ERP and the carrier come from the registry).

    :param dag_id: the DAG id; also the pipeline's namespace in the ledger.
    :param settings: validated settings (see :func:`ml_connector.settings.load_settings`).
    :param dag_kwargs: passed to :class:`airflow.sdk.DAG` (override anything).
    """
    common = {"pipeline_id": dag_id, "settings": settings}
    default_args = {"owner": settings.owner, "retry_policy": RETRY_POLICY, **retry_delays(settings)}
    erp, carrier = registry.erp(settings.erp), registry.carrier(settings.carrier)
    quarantine_rule = (", or when it quarantined new orders (orders it only sees again do not count)"
                       if settings.fail_run_on_quarantine else
                       "; new quarantines are listed but keep the run green (`fail_run_on_quarantine: false`)")
    doc = DOC.format(erp_name=erp.display_name, carrier_name=carrier.display_name, schedule=settings.schedule,
                     timezone=settings.timezone, overlap=settings.overlap_minutes, parallel_lanes=min(settings.parallel_lanes, settings.max_lanes),
                     lane_per_order_up_to=settings.lane_per_order_up_to, api_budget=settings.api_budget,
                     dag_id=dag_id, erp_conn=settings.erp_connection_id, carrier_conn=settings.carrier_connection_id,
                     ledger=settings.ledger_conn_id, quarantine_rule=quarantine_rule)
    options: dict[str, Any] = dict(
        dag_id=dag_id,
        description=settings.description or f"{erp.display_name} -> {carrier.display_name} labels and tracking",
        schedule=CronDataIntervalTimetable(settings.schedule, timezone=settings.timezone),
        start_date=settings.start_date if settings.start_date.tzinfo else settings.start_date.replace(tzinfo=UTC),
        catchup=settings.catchup,
        max_active_runs=1,
        default_args=default_args,
        doc_md=doc,
        tags=sorted({"ml-connector", settings.erp, settings.carrier, *settings.tags}),
    )
    options.update(dag_kwargs)
    # one Airflow pool per external API (settings `carrier_pool`, `erp_pool`; none: Airflow's default_pool), one
    # slot per task, so every DAG naming a pool shares its slots (README, "Sizing a bigger deployment")
    carrier_pool, erp_pool = pool_args(settings.carrier_pool), pool_args(settings.erp_pool)
    with DAG(**options) as dag:
        extract = ExtractOrdersOperator(task_id="extract_orders", **erp_pool, **common)

        lane_steps: list[str] = []

        @task_group(group_id="process_order")
        def process_order(lane):
            # every step takes `lane` (extract_orders' output), so extract_orders is a direct upstream of each:
            # the all_done steps below wait for it, and never expand before its lanes exist
            validate = ValidateAddressOperator(task_id="validate_address", lane=lane, **carrier_pool, **common)
            # all_done: in a batched lane, one order failing validation must not stop the others' labels;
            # each operator only works the orders the ledger says are ready for it.
            create = CreateShipmentOperator(task_id="create_shipment", lane=lane, trigger_rule="all_done",
                                            **carrier_pool, **common)
            writeback = WritebackOperator(task_id="writeback", lane=lane, trigger_rule="all_done", **erp_pool,
                                          **common)
            validate >> create >> writeback
            lane_steps.extend(t.task_id for t in (validate, create, writeback))

        lanes = process_order.expand(lane=extract.output)
        poll = PollTrackingOperator(task_id="poll_tracking", trigger_rule="all_done", **carrier_pool, **common)
        report = ReportOperator(task_id="report", extract_task_id=extract.task_id, lane_task_ids=lane_steps,
                                **common)
        extract >> lanes >> poll >> report
    return dag


def pool_args(pool: str | None) -> dict[str, Any]:
    """Operator arguments that put a task in ``pool`` with one slot (nothing for None: Airflow's default_pool)."""
    return {"pool": pool, "pool_slots": 1} if pool else {}


def erp_ups_dag(dag_id: str, *, settings_file: str | Path | None = None, **overrides: Any) -> DAG:
    """Load ``dag_id``'s settings from the pipelines file and build its DAG (what the files in ``dags/`` call)."""
    return build_erp_ups_dag(dag_id, load_settings(dag_id, settings_file, overrides or None))
