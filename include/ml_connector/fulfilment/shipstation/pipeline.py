"""The two-way DAG shape of an ERP <-> ShipStation pipeline: its settings, operators and factory.

::

    push_items            (ERP items modified in the interval -> ShipStation products by SKU)
    collect_orders -> book_orders   (webhook inbox + poll -> documents in the ERP, exactly once per orderKey)
    renew_subscriptions   (ERP webhook subscriptions, when ``erp_webhook_url`` is set)
    -> report             (all_done; the only leaf: lists missing SKUs and record errors, red on new errors)

It reuses the hooks, the ledger and the retry policy of the ERP -> carrier pipelines, but not their factory
(:mod:`ml_connector.pipelines`): records move both ways here. XComs carry order ids and SKUs only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable
from airflow.sdk.exceptions import AirflowFailException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ml_connector import registry
from ml_connector.errors import ConfigurationError
from ml_connector.operators.base import RETRY_POLICY

FULFILMENT = "shipstation"
DOC = """\
### {erp_name} <-> ShipStation

Every {schedule!r} ({timezone}):

* `push_items`: {erp_name} items modified in the interval are updated in ShipStation as products keyed on SKU
  (GET, merge, PUT the whole product). SKUs ShipStation does not hold are listed by `report` and kept in the
  ledger (`ml_fulfilment_records`): ShipStation v1 cannot create products. {erp_name} customers modified in the
  interval that ShipStation does not know are reported too: v1 only reads customers (ship-to travels with each
  order), so their ship-to details cannot be pushed.
* `collect_orders`: the ShipStation webhooks stored since the last run (`ORDER_NOTIFY`, `SHIP_NOTIFY` at
  `/ml-connector/webhooks/shipstation/<token>`) are followed, and the orders modified / shipped in the interval
  are polled (edits no webhook reports).
* `book_orders`: each order becomes one {document} in {erp_name}, keyed on its `orderKey` as external document
  number: open orders keep a draft up to date, shipped ones get a comment line with tracking number, carrier
  and service{posted}. A customer or item {erp_name} does not know is a record error naming it.
* `renew_subscriptions`: {erp_name} webhook subscriptions (items) created and renewed before their 3-day expiry.
* Connections: `{erp_conn}`, `{ss_conn}`, `{ledger}`. Settings: `include/pipelines.yaml`, key `{dag_id}`.
"""


class FulfilmentSettings(BaseModel):
    """Everything an ERP <-> ShipStation pipeline can be told (``include/pipelines.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    erp: str
    fulfilment: Literal["shipstation"] = FULFILMENT
    description: str | None = None
    erp_conn_id: str | None = None
    fulfilment_conn_id: str | None = None
    ledger_conn_id: str = "ml_connector_ledger"
    schedule: str = "*/15 * * * *"
    timezone: str = "UTC"
    start_date: datetime = datetime(2026, 11, 1)
    catchup: bool = False
    overlap_minutes: int = Field(5, ge=0, le=24 * 60)
    # what an order becomes in the ERP: a posted sales invoice, or a sales order
    document: Literal["sales_invoice", "sales_order"] = "sales_invoice"
    # the ShipStation order field that holds the ERP customer number
    customer_field: str = "customerUsername"
    # keep a draft document for orders not shipped yet (edits update it)
    book_open_orders: bool = True
    push_items: bool = True
    # report Business Central customers (modified in the interval) ShipStation does not know (v1 cannot write them)
    report_unknown_customers: bool = True
    # ERP webhook subscriptions (public https URL of /ml-connector/webhooks/<erp>); None: no subscriptions
    erp_webhook_url: str | None = None
    erp_webhook_resources: list[str] = Field(default_factory=lambda: ["items"])
    renew_before_hours: float = Field(24.0, gt=0, lt=72)
    fail_run_on_record_error: bool = True
    retries: int = Field(3, ge=0, le=20)
    retry_delay_seconds: int = Field(30, ge=1)
    max_retry_delay_seconds: int = Field(900, ge=1)
    owner: str = "ml-connector"
    tags: list[str] = Field(default_factory=list)

    @field_validator("erp")
    @classmethod
    def _known_erp(cls, value: str) -> str:
        try:
            registry.erp(value)  # the hook's capabilities are checked when a task builds it (no I/O code at parse)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

    @property
    def erp_connection_id(self) -> str:
        return self.erp_conn_id or registry.erp(self.erp).default_conn_id

    @property
    def fulfilment_connection_id(self) -> str:
        return self.fulfilment_conn_id or registry.fulfilment(self.fulfilment).default_conn_id


def load_fulfilment_settings(pipeline_id: str, path: str | Path | None = None,
                             overrides: dict[str, Any] | None = None) -> FulfilmentSettings:
    """Read and validate one two-way pipeline's block of the pipelines file.

    :raises ConfigurationError: the file, the pipeline or a setting is wrong (the message names it).
    """
    from ml_connector.settings import default_settings_file

    path = Path(path) if path else default_settings_file()
    try:
        raw = (yaml.safe_load(path.read_text()) or {}).get(pipeline_id)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read the pipeline settings ({exc})") from None
    if raw is None:
        raise ConfigurationError(f"{path}: no pipeline '{pipeline_id}'")
    try:
        return FulfilmentSettings.model_validate({**raw, **(overrides or {})})
    except ValidationError as exc:
        problems = "; ".join(f"setting '{'.'.join(str(p) for p in e['loc']) or '(pipeline)'}': {e['msg']}"
                             for e in exc.errors())
        raise ConfigurationError(f"{path}: pipeline '{pipeline_id}': {problems}") from None


# -- operators -------------------------------------------------------------------------------------------------

class FulfilmentOperator(BaseOperator):
    """Base of the two-way pipeline's operators: hooks, ledger and the sync object from the settings."""

    ui_color = "#e3f2fd"

    def __init__(self, *, pipeline_id: str, settings: FulfilmentSettings, **kwargs: Any) -> None:
        kwargs.setdefault("retry_policy", RETRY_POLICY)
        super().__init__(**kwargs)
        self.pipeline_id = pipeline_id
        self.settings = settings

    def ledger(self):
        from ml_connector.ledger import Ledger

        return Ledger.from_airflow(self.settings.ledger_conn_id)

    def erp_hook(self, ledger):
        hook = registry.erp(self.settings.erp).load("hook")
        if not hasattr(hook, "create_document"):
            raise ConfigurationError(f"ERP {self.settings.erp!r} cannot take orders back from ShipStation (its hook "
                                     "has no documents); set erp: business_central in this pipeline's settings")
        return hook(self.settings.erp_connection_id, ledger=ledger)

    def sync(self):
        ledger = self.ledger()
        shipstation = registry.fulfilment(self.settings.fulfilment).load("hook")(
            self.settings.fulfilment_connection_id, ledger=ledger)
        implementation = registry.fulfilment(self.settings.fulfilment).load("implementation")
        return implementation(self.pipeline_id, shipstation=shipstation, erp=self.erp_hook(ledger), ledger=ledger,
                              document=self.settings.document, customer_field=self.settings.customer_field,
                              book_open_orders=self.settings.book_open_orders)

    def window(self, context: Any) -> tuple[datetime, datetime]:
        start, end = context["data_interval_start"], context["data_interval_end"]
        return start - timedelta(minutes=self.settings.overlap_minutes), end


class PushItemsOperator(FulfilmentOperator):
    def execute(self, context: Any) -> list[str]:
        sync, done = self.sync(), []
        if self.settings.push_items:
            outcome = sync.push_items(*self.window(context))
            for sku, reason in outcome.problems.items():
                self.log.warning("item %s: %s", sku, reason)
            self.log.info("items: %d pushed, %d unchanged, %d missing in ShipStation", len(outcome.done),
                          len(outcome.unchanged), len(outcome.problems))
            done = outcome.done
        if self.settings.report_unknown_customers:
            customers = sync.report_customers(*self.window(context))
            for number, reason in customers.problems.items():
                self.log.warning("customer %s: %s", number, reason)
            self.log.info("customers: %d known to ShipStation, %d unknown (v1 cannot create or update customers)",
                          len(customers.unchanged), len(customers.problems))
        return done


class CollectOrdersOperator(FulfilmentOperator):
    def execute(self, context: Any) -> list[int]:
        ids = self.sync().collect(*self.window(context))
        self.log.info("%d ShipStation order(s) to look at", len(ids))
        return ids


class BookOrdersOperator(FulfilmentOperator):
    def __init__(self, *, order_ids: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.order_ids = order_ids

    template_fields = ("order_ids",)

    def execute(self, context: Any) -> list[str]:
        outcome = self.sync().book(self.order_ids or [])
        for key, reason in outcome.problems.items():
            self.log.warning("order %s: %s", key, reason)
        self.log.info("orders: %d booked or drafted, %d unchanged, %d record errors", len(outcome.done),
                      len(outcome.unchanged), len(outcome.problems))
        return outcome.done


class RenewSubscriptionsOperator(FulfilmentOperator):
    def execute(self, context: Any) -> list[str]:
        url = self.settings.erp_webhook_url
        if not url:
            return []
        hook = self.erp_hook(self.ledger())
        now = datetime.now(UTC)
        current = {s.get("resource", "").rsplit("/", 1)[-1]: s for s in hook.list_subscriptions()
                   if s.get("notificationUrl") == url}
        done = []
        for resource in self.settings.erp_webhook_resources:
            sub = current.get(resource)
            if sub is None:
                hook.create_subscription(url, resource, client_state=str(hook.extra("webhook_client_state") or ""))
                done.append(f"created {resource}")
                continue
            expires = datetime.fromisoformat(str(sub["expirationDateTime"]).replace("Z", "+00:00"))
            if expires - now < timedelta(hours=self.settings.renew_before_hours):
                hook.renew_subscription(sub)
                done.append(f"renewed {resource}")
        self.log.info("subscriptions: %s", ", ".join(done) or "all current")
        return done


class FulfilmentReportOperator(FulfilmentOperator):
    def execute(self, context: Any) -> dict[str, int]:
        from ml_connector.ledger import fulfilment

        since = context["dag_run"].start_date or datetime.now(UTC) - timedelta(hours=1)
        rows = [r for r in fulfilment.rows(self.ledger(), self.pipeline_id)
                if _aware(r["updated_at"]) >= _aware(since)]
        counts: dict[str, int] = {}
        for row in rows:
            counts[f"{row['kind']}:{row['state']}"] = counts.get(f"{row['kind']}:{row['state']}", 0) + 1
            if row["state"] in ("missing_sku", "unknown_customer", "error"):
                self.log.warning("%s %s %s: %s", row["kind"], row["record_key"], row["state"], row["detail"])
        self.log.info("run summary: %s", counts)
        errors = counts.get("order:error", 0)
        if errors and self.settings.fail_run_on_record_error:
            raise AirflowFailException(f"{errors} ShipStation order(s) could not be booked: see the log above")
        ti = context["ti"]
        run_id = context["run_id"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(task for task, state in states.items()
                        if task != self.task_id and state in ("failed", "upstream_failed"))
        if failed:
            raise AirflowFailException(f"task(s) {', '.join(failed)} failed")
        return counts


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- the factory -------------------------------------------------------------------------------------------------

def build_fulfilment_dag(dag_id: str, settings: FulfilmentSettings, **dag_kwargs: Any) -> DAG:
    """Build the two-way DAG (no network, no database)."""
    erp = registry.erp(settings.erp)
    common = {"pipeline_id": dag_id, "settings": settings}
    doc = DOC.format(erp_name=erp.display_name, schedule=settings.schedule, timezone=settings.timezone,
                     document=settings.document.replace("_", " "),
                     posted=", and a sales invoice is posted (Microsoft.NAV.post)"
                     if settings.document == "sales_invoice" else "",
                     erp_conn=settings.erp_connection_id, ss_conn=settings.fulfilment_connection_id,
                     ledger=settings.ledger_conn_id, dag_id=dag_id)
    options: dict[str, Any] = dict(
        dag_id=dag_id, description=settings.description or f"{erp.display_name} <-> ShipStation",
        schedule=CronDataIntervalTimetable(settings.schedule, timezone=settings.timezone),
        start_date=settings.start_date if settings.start_date.tzinfo else settings.start_date.replace(tzinfo=UTC),
        catchup=settings.catchup, max_active_runs=1, doc_md=doc,
        default_args={"owner": settings.owner, "retry_policy": RETRY_POLICY, "retries": settings.retries,
                      "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
                      "retry_exponential_backoff": 2.0,
                      "max_retry_delay": timedelta(seconds=settings.max_retry_delay_seconds)},
        tags=sorted({"ml-connector", settings.erp, settings.fulfilment, *settings.tags}))
    options.update(dag_kwargs)
    with DAG(**options) as dag:
        push = PushItemsOperator(task_id="push_items", **common)
        collect = CollectOrdersOperator(task_id="collect_orders", **common)
        book = BookOrdersOperator(task_id="book_orders", order_ids=collect.output, **common)
        renew = RenewSubscriptionsOperator(task_id="renew_subscriptions", **common)
        report = FulfilmentReportOperator(task_id="report", trigger_rule="all_done", **common)
        collect >> book
        [push, book, renew] >> report
    return dag


def fulfilment_dag(dag_id: str, *, settings_file: str | Path | None = None, **overrides: Any) -> DAG:
    """Load ``dag_id``'s settings and build its DAG (what ``dags/<dag_id>.py`` calls)."""
    return build_fulfilment_dag(dag_id, load_fulfilment_settings(dag_id, settings_file, overrides or None))
