"""What the pipeline operators share: the retry policy, lanes, and per-order outcome reporting.

A *lane* is one map index of the ``process_order`` task group. It carries one order when a run is small, or a
batch of orders when a run has more than ``lane_per_order_up_to`` orders (every task instance costs scheduler
time and a process). Inside a lane the orders are worked concurrently, as many calls at once as the lane holds of
the API account's in-flight budget (:mod:`ml_connector.operators.in_flight`); one order's permanent failure
quarantines that order only; the lane then reports it (red in the grid, with the reason) after the other orders
finished. Retrying or clearing a lane redoes only unfinished orders: the ledger
knows which. A lane that fails says why in an XCom (:data:`LANE_OUTCOME_KEY`), so that the run's ``report``
step can tell a lane that only quarantined orders from one that failed on configuration or transient errors.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ml_connector import registry
from ml_connector.errors import AuthenticationError, ConfigurationError, PermanentError, RetryableError
from ml_connector.ledger import Ledger, ShipmentRow
from ml_connector.operators.in_flight import SharedBudget, work_within
from ml_connector.service import AlreadyQuarantined, NothingToDo, ShipmentService
from ml_connector.settings import PipelineSettings

#: Transient errors (429, 5xx, timeouts of idempotent calls) retry with Airflow's backoff; data and
#: configuration errors fail at once: retrying the same bad address cannot help. A Ship call with an unknown
#: outcome is not retried at all: the order waits as label_uncertain (see ShipmentService).
RETRY_POLICY = ExceptionRetryPolicy(rules=[
    RetryRule(exception="ml_connector.errors.RetryableError", action=RetryAction.RETRY,
              reason="transient API error (rate limit, 5xx, timeout): retrying with backoff"),
    RetryRule(exception="ml_connector.errors.PermanentError", action=RetryAction.FAIL,
              reason="bad data or configuration: retrying cannot help; fix it and clear the task"),
    # programming errors never heal on retry: fail at once instead of waiting out the backoff
    RetryRule(exception=[TypeError, AttributeError, NameError], action=RetryAction.FAIL,
              reason="a bug in the pipeline code: retrying cannot help"),
])

Lane = dict[str, Any]  # {"label": "SO-1001", "orders": [[ledger_id, "SO-1001"], ...]}

#: XCom key under which a failing lane says why: ``{"kind": "quarantined" | "configuration" | "retry",
#: "orders": [[order_number, reason], ...]}``. Only "quarantined" means "the pipeline worked, the data did not".
LANE_OUTCOME_KEY = "lane_outcome"


def actor_prefix(run_id: str) -> str:
    """The start of every audit actor of one DAG run (see :meth:`PipelineOperator.actor`)."""
    return f"{run_id}/"


def lane_label(numbers: Sequence[str], *, shown: int = 3) -> str:
    """The grid name of a lane: its order number(s)."""
    if len(numbers) <= shown:
        return ", ".join(numbers)
    return f"{', '.join(numbers[:shown])} +{len(numbers) - shown} more"


def make_lanes(rows: Sequence[ShipmentRow], max_lanes: int, *, one_per_order_up_to: int | None = None,
               parallel_lanes: int | None = None, budget: int | None = None) -> list[Lane]:
    """Cut a run's orders into lanes (consecutive orders share a lane, so lane names stay readable).

    Adaptive (``one_per_order_up_to`` given): up to that many orders, one order per lane (each its own grid
    cell); beyond it, ``parallel_lanes`` lanes (at most ``max_lanes``). Without it: one order per lane up to
    ``max_lanes`` orders, beyond that orders spread evenly over ``max_lanes`` lanes. With the in-flight
    ``budget`` (``api_budget``) a lane may use up to that many threads (``lane["concurrency"]``, never more than
    its orders); how many of them call an API at once is what the lane holds of the account's shared budget
    (:mod:`ml_connector.operators.in_flight`)."""
    if not rows:
        return []
    if one_per_order_up_to is None:
        lanes_wanted = max_lanes
    elif len(rows) <= one_per_order_up_to:
        lanes_wanted = min(len(rows), max_lanes)
    else:
        lanes_wanted = min(parallel_lanes or max_lanes, max_lanes)
    per_lane = max(1, math.ceil(len(rows) / lanes_wanted))
    chunks = [rows[start:start + per_lane] for start in range(0, len(rows), per_lane)]
    lanes = []
    for chunk in chunks:
        lane: Lane = {"label": lane_label([r.order_number for r in chunk]),
                      "orders": [[r.id, r.order_number] for r in chunk]}
        if budget is not None:
            lane["concurrency"] = min(len(chunk), budget)
        lanes.append(lane)
    return lanes


@dataclass
class LaneReport:
    """What happened to each order of a lane in one step."""

    done: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (order number, reason)
    retry: list[tuple[str, RetryableError]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    configuration: list[tuple[str, PermanentError]] = field(default_factory=list)


class PipelineOperator(BaseOperator):
    """Base of every pipeline operator.

    :param pipeline_id: the pipeline (and DAG) id, the ledger's namespace.
    :param settings: the validated pipeline settings.
    """

    ui_color = "#fdf1e3"

    def __init__(self, *, pipeline_id: str, settings: PipelineSettings, **kwargs: Any) -> None:
        kwargs.setdefault("retry_policy", RETRY_POLICY)
        super().__init__(**kwargs)
        if not isinstance(settings, PipelineSettings):
            raise TypeError(f"settings must be a PipelineSettings, got {type(settings).__name__}")
        self.pipeline_id = pipeline_id
        self.settings = settings
        self._ledger: Ledger | None = None
        self._opened: list[Any] = []

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger.from_airflow(self.settings.ledger_conn_id)
        return self._ledger

    def actor(self, context: Any) -> str:
        """Who did it, for the audit trail and claims: run id, task, map index and try."""
        ti = context["ti"]
        return f"{actor_prefix(context['run_id'])}{ti.task_id}[{ti.map_index}]#{ti.try_number}"

    def carrier(self):
        """The pipeline's :class:`~ml_connector.carriers.protocol.Carrier` (from the registry)."""
        carrier_cls = registry.carrier(self.settings.carrier).load("implementation")
        return carrier_cls.from_settings(self.settings, ledger=self.ledger)

    def source(self):
        """The pipeline's :class:`~ml_connector.erp.protocol.OrderSource` (from the registry). Every source
        made here is closed by :meth:`close_sources` when the task ends."""
        source = registry.erp(self.settings.erp).load("implementation")(self.settings)
        self._opened.append(source)
        return source

    def close_sources(self) -> None:
        """Close every source this task opened (ERP sessions end even when the task failed halfway)."""
        while self._opened:
            source = self._opened.pop()
            try:
                source.close()  # a logoff (Acumatica, SYSPRO) is the one call outside the in-flight budget
            except Exception as exc:  # a failed logoff must not hide the task's own outcome
                self.log.warning("closing the %s session failed: %s", self.settings.erp, exc)

    def shared_budget(self, api: str) -> SharedBudget:
        """This task's hold on the in-flight budget (``api_budget``) of the pipeline's ``"carrier"`` or ``"erp"``
        account, shared through the ledger with every task calling the same connection."""
        vendor, conn_id = ((self.settings.carrier, self.settings.carrier_connection_id) if api == "carrier"
                           else (self.settings.erp, self.settings.erp_connection_id))
        holder = f"{self.pipeline_id}/{self.task_id}/{uuid.uuid4().hex[:12]}"  # unique per hold, readable
        return SharedBudget(self.ledger, f"{vendor}:{conn_id}", holder, self.settings.api_budget)

    def service(self, context: Any, **kwargs: Any) -> ShipmentService:
        """The exactly-once service for this task instance."""
        return ShipmentService(self.ledger, self.carrier(), actor=self.actor(context),
                               claim_ttl_seconds=self.settings.claim_ttl_seconds, **kwargs)


class LaneOperator(PipelineOperator):
    """Runs :meth:`process` for every order of a lane, then reports.

    Outcome rules: a configuration or credential error (:class:`ConfigurationError`, :class:`AuthenticationError`)
    fails the task and quarantines nothing; another :class:`PermanentError` quarantines the order (the ledger row
    keeps the reason) and, once the other orders are done, fails the task with every reason; a
    :class:`RetryableError` is recorded and raised after the other orders are done, so that Airflow retries the
    lane (finished orders are no-ops then). Before failing, the lane pushes its outcome under
    :data:`LANE_OUTCOME_KEY` (the ``report`` step reads it).

    :param lane: ``{"label": ..., "orders": [[ledger_id, order_number], ...]}`` from ``extract_orders``.
    """

    step: str = "lane"
    #: the account whose in-flight budget the step's calls count against: ``"carrier"`` or ``"erp"``
    api: str = "carrier"
    # a template field, so that the process_order group's mapped argument is resolved per map index
    template_fields = ("lane",)

    def __init__(self, *, lane: Lane, **kwargs: Any) -> None:
        kwargs.setdefault("map_index_template", "{{ lane_label }}")
        super().__init__(**kwargs)
        self.lane = lane

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        raise NotImplementedError

    def before_lane(self, context: Any) -> None:
        """Per-task setup shared by the lane's orders (hooks, ship-from...)."""

    def execute(self, context: Any) -> list[dict[str, Any]]:
        context["lane_label"] = self.lane["label"]  # rendered into map_index_template
        try:
            self.before_lane(context)
            rows = self.ledger.get_many([ledger_id for ledger_id, _number in self.lane["orders"]])
            report = self._run(rows, context)
        finally:
            self.close_sources()
        return self._finish(report, context)

    def _run(self, rows: list[ShipmentRow], context: Any) -> LaneReport:
        report = LaneReport()
        actor = self.actor(context)

        def work(row: ShipmentRow) -> tuple[str, Any]:
            try:
                return "done", self.process(row, context)
            except NothingToDo as why:
                return "skipped", f"{row.order_number}: {why}"
            except (ConfigurationError, AuthenticationError) as exc:
                # the connection or a setting is wrong, not this order: quarantine nothing, fail the task;
                # once the configuration is fixed the orders go on by themselves
                return "configuration", (row.order_number, exc)
            except PermanentError as exc:
                self.log.error("order %s: %s failed: %s", row.order_number, self.step, exc)
                self._quarantine(row, exc, actor)
                return "failed", (row.order_number, str(exc))
            except RetryableError as exc:
                self.log.warning("order %s: %s will be retried: %s", row.order_number, self.step, exc)
                self.ledger.record_error(row.id, step=self.step, error=exc, actor=actor)
                return "retry", (row.order_number, exc)

        # up to the lane's threads (lanes made by an older release: lane_concurrency), as many at once as the lane
        # holds of the account's in-flight budget
        threads = self.lane.get("concurrency") or self.settings.lane_concurrency
        budget = self.shared_budget(self.api)
        for kind, payload in work_within(rows, work, threads=threads, budget=budget, name=self.step):
            getattr(report, kind).append(payload)
        if len(rows) > 1:
            self.log.info("%d order(s) worked with up to %d call(s) in flight (%s)", len(rows), budget.most_held,
                          budget.api)
        return report

    def _quarantine(self, row: ShipmentRow, exc: PermanentError, actor: str) -> None:
        if not isinstance(exc, AlreadyQuarantined):  # reported again, recorded once
            self.ledger.quarantine(row.id, step=self.step, error=exc, actor=actor)

    def _finish(self, report: LaneReport, context: Any) -> list[dict[str, Any]]:
        for line in report.skipped:
            self.log.info("skipped %s", line)
        if report.configuration:
            _number, first = report.configuration[0]
            self.log.error("%s failed on configuration, not on the orders (none was quarantined): %s",
                           self.step, first)
            self._say_why(context, "configuration", [(n, str(e)) for n, e in report.configuration])
            raise first
        if report.retry:
            summary = "; ".join(f"{n}: {e}" for n, e in report.retry)
            self._say_why(context, "retry", [(n, str(e)) for n, e in report.retry])
            raise RetryableError(f"{len(report.retry)} order(s) hit transient errors; Airflow retries the lane "
                                 f"(finished orders are not redone): {summary}")
        if report.failed:
            self._say_why(context, "quarantined", report.failed)
            reasons = "\n".join(f"  {n}: {why}" for n, why in report.failed)
            raise AirflowFailException(
                f"{len(report.failed)} of {len(self.lane['orders'])} order(s) in this lane were quarantined at "
                f"{self.step} (fix them in the ERP; the next run picks them up):\n{reasons}")
        if not report.done and report.skipped:
            raise AirflowSkipException("; ".join(report.skipped))
        return report.done

    @staticmethod
    def _say_why(context: Any, kind: str, orders: Sequence[tuple[str, str]]) -> None:
        """Push why this lane fails (:data:`LANE_OUTCOME_KEY`) for the ``report`` step."""
        context["ti"].xcom_push(key=LANE_OUTCOME_KEY, value={"kind": kind, "orders": [list(o) for o in orders]})


def retry_delays(settings: PipelineSettings) -> dict[str, Any]:
    """``default_args`` for Airflow's own retries: exponential backoff (jitter is Airflow's)."""
    return {
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_seconds),
    }
