"""``report``: the run's verdict, the last task of every run.

A DAG run's state comes from its leaf tasks, and this is the only leaf: it runs whatever happened before it
(``trigger_rule="all_done"``) and fails when the run must not be green:

* **the pipeline failed**: ``extract_orders`` or ``poll_tracking`` failed, or a lane failed for a reason other
  than quarantined orders (a configuration or credential error, transient errors that outlasted the retries, a
  crash), or a task did not run because an upstream task failed. The states come from the Task SDK
  (``get_task_states`` of this run); why a lane failed comes from the XCom the lane pushed before failing
  (:data:`~ml_connector.operators.base.LANE_OUTCOME_KEY`); a failed lane that said nothing counts as a pipeline
  failure.
* **this run parked new orders** (``fail_run_on_quarantine``, default on): orders this run moved to
  ``quarantined`` (or to ``label_uncertain``, where the ledger has that state). "This run" is read from the
  ledger's audit trail, whose actors start with the run id (``run_id/task[map]#try``), so a run that only sees
  old quarantines again (an overlapping window, a re-run) stays green while its lanes for them are red.

Its log lists every order with its reason and the run's counts (seen, labelled, written back, quarantined,
uncertain); the same summary is pushed as the ``report`` XCom. Airflow 3.3's Task SDK cannot write task or run
notes (the execution API has no route for them), so the log, the failure message and the XCom carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ml_connector.ledger import ShipmentState
from ml_connector.operators.base import LANE_OUTCOME_KEY, PipelineOperator, actor_prefix
from ml_connector.operators.extract import COUNTS_KEY

#: XCom key of the run's summary (counts, parked orders, pipeline failures).
REPORT_KEY = "report"
#: Task states that mean "this task did not do its job".
_NOT_DONE = frozenset({"failed", "upstream_failed"})
_QUARANTINED = ShipmentState.QUARANTINED.value


def uncertain_state() -> ShipmentState | None:
    """``label_uncertain`` where the ledger has that state (a Ship call whose outcome is unknown), else None."""
    return getattr(ShipmentState, "LABEL_UNCERTAIN", None)


def parse_task_states(states: dict[str, Any], task_ids: Sequence[str]) -> dict[tuple[str, int], str]:
    """``get_task_states`` keys (``task_id`` or ``task_id_<map_index>``) as ``(task_id, map_index)``."""
    known = set(task_ids)
    parsed: dict[tuple[str, int], str] = {}
    for key, state in states.items():
        value = str(getattr(state, "value", state))  # an enum member or its value; None: not run yet
        if key in known:
            parsed[(key, -1)] = value
            continue
        task_id, _, index = key.rpartition("_")
        if task_id in known and index.isdigit():
            parsed[(task_id, int(index))] = value
    return parsed


def _entered(rows: list[dict[str, Any]], state: str, *, outcome: str | None = None) -> list[dict[str, Any]]:
    """The last audit row per order that moved it into ``state`` (staying in it is not entering it, except for
    a quarantine recorded again with a new reason)."""
    last: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if row["to_state"] != state or (outcome is not None and row["outcome"] != outcome):
            continue
        if row["from_state"] == state and row["outcome"] != "quarantined":
            continue
        last[row["shipment_pk"] or row["order_number"]] = row
    return sorted(last.values(), key=lambda r: r["order_number"] or "")


class ReportOperator(PipelineOperator):
    """The run's verdict (see the module docstring): fails the run when the pipeline failed or, with
    ``fail_run_on_quarantine``, when this run quarantined (or made uncertain) new orders.

    :param extract_task_id: the task that returns the lanes and pushes the extraction counts.
    :param lane_task_ids: the lane tasks (they say why they failed under ``LANE_OUTCOME_KEY``).
    """

    ui_color = "#f0e3fd"

    def __init__(self, *, extract_task_id: str, lane_task_ids: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.extract_task_id = extract_task_id
        self.lane_task_ids = list(lane_task_ids)

    def execute(self, context: Any) -> None:
        ti, run_id = context["ti"], context["run_id"]
        raw = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        states = parse_task_states(raw, list(self.dag.task_dict) if self.dag else [])
        lanes = ti.xcom_pull(task_ids=self.extract_task_id) or []
        failures = self.pipeline_failures(ti, states, lanes)
        summary = self.summarise(run_id, ti.xcom_pull(task_ids=self.extract_task_id, key=COUNTS_KEY))
        summary["failures"] = failures
        ti.xcom_push(key=REPORT_KEY, value=summary)

        self.log.info("run %s: %s", run_id, summary["note"])
        for kind in ("quarantined", "uncertain"):
            for order in summary[kind]:
                self.log.warning("%s %s at %s: %s", kind, order["order"], order["step"], order["reason"])
        for order in summary["still_uncertain"]:
            self.log.warning("still label_uncertain from an earlier run: %s", order)
        reasons = []
        if failures:
            reasons.append("the pipeline failed:\n" + "\n".join(f"  - {f}" for f in failures))
        parked = {"quarantined": "fix them in the ERP; the first run after the change picks them up",
                  "uncertain": "the carrier may have made a label for them: see `ml-connector ledger "
                               f"{self.pipeline_id}`"}
        for kind, advice in parked.items():
            if not summary[kind]:
                continue
            if not self.settings.fail_run_on_quarantine:
                self.log.warning("%d order(s) newly %s; fail_run_on_quarantine is off, so the run stays green",
                                 len(summary[kind]), kind)
                continue
            reasons.append(f"{len(summary[kind])} order(s) newly {kind} by this run ({advice}):\n" + "\n".join(
                f"  - {o['order']} (at {o['step']}): {o['reason']}" for o in summary[kind]))
        if reasons:
            raise AirflowFailException(f"this run is red ({summary['note']}): " + "\n".join(reasons))
        self.log.info("this run is green")

    def pipeline_failures(self, ti: Any, states: dict[tuple[str, int], str], lanes: list[dict]) -> list[str]:
        """What in this run failed for another reason than quarantined orders, one line each."""
        failures, blocked = [], []
        for (task_id, index), state in sorted(states.items()):
            if task_id == self.task_id or state not in _NOT_DONE:
                continue
            label = lanes[index]["label"] if 0 <= index < len(lanes) else None
            name = f"{task_id}[{label or index}]" if index >= 0 else task_id
            if state == "upstream_failed":
                blocked.append(name)
                continue
            if task_id in self.lane_task_ids and index >= 0:
                why = ti.xcom_pull(task_ids=task_id, key=LANE_OUTCOME_KEY, map_indexes=index)
                if isinstance(why, dict) and why.get("kind") in ("quarantined", "uncertain"):
                    continue  # the orders are in the ledger, and counted below only if this run parked them
                if isinstance(why, dict) and why.get("orders"):
                    first_number, first_reason = why["orders"][0]
                    more = f" (+{len(why['orders']) - 1} more)" if len(why["orders"]) > 1 else ""
                    failures.append(f"{name} failed ({why.get('kind')}): {first_number}: {first_reason}{more}")
                    continue
            failures.append(f"{name} failed (see its log)")
        if blocked:
            failures.append(f"{len(blocked)} task(s) did not run because an upstream task failed: "
                            + ", ".join(blocked[:5]) + (" ..." if len(blocked) > 5 else ""))
        return failures

    def summarise(self, run_id: str, counts: dict[str, int] | None) -> dict[str, Any]:
        """What this run did, from the ledger's audit trail (actors starting with the run id)."""
        rows = self.ledger.audit_by_actor_prefix(self.pipeline_id, actor_prefix(run_id))

        def orders(entered: list[dict[str, Any]]) -> list[dict[str, str]]:
            return [{"order": r["order_number"], "state": r["to_state"], "step": r["step"],
                     "reason": r["message"] or ""} for r in entered]

        quarantined = orders(_entered(rows, _QUARANTINED, outcome="quarantined"))
        state = uncertain_state()
        uncertain = orders(_entered(rows, state.value)) if state is not None else []
        still = []
        if state is not None:
            new = {o["order"] for o in uncertain}
            still = [r.order_number for r in self.ledger.list(self.pipeline_id, [state]) if r.order_number not in new]
        labelled = [r["order_number"] for r in _entered(rows, ShipmentState.LABELLED.value)]
        written = [r["order_number"] for r in _entered(rows, ShipmentState.WRITTEN_BACK.value)]
        seen = counts["orders"] + counts["requeued"] if isinstance(counts, dict) else None
        numbers = {"seen": seen, "labelled": len(labelled), "written_back": len(written),
                   "quarantined": len(quarantined), "uncertain": len(uncertain)}
        note = (f"seen {'?' if seen is None else seen} · labelled {len(labelled)} · written back {len(written)} · "
                f"quarantined {len(quarantined)} · uncertain {len(uncertain)}")
        return {"counts": numbers, "note": note, "quarantined": quarantined, "uncertain": uncertain,
                "still_uncertain": still, "labelled": labelled, "written_back": written}
