"""``ml_connector_resolve``: a person's decision on one shipment, from the Airflow UI's Trigger form.

The same three decisions as ``ml-connector shipments adopt|rebuy|retry``, through the same
:class:`~ml_connector.service.ShipmentDecisions` (nothing is decided here): adopt a label found by hand, buy anew
for an uncertain order, or release a quarantined order once its data was fixed. Each writes an audit row with
who (the ``by`` param, else the user who triggered the run) and why.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from airflow.sdk import DAG, BaseOperator, Param

from ml_connector.ledger import Ledger
from ml_connector.operators.base import RETRY_POLICY
from ml_connector.service import ShipmentDecisions
from ml_connector.settings import default_settings_file, load_settings

DAG_ID = "ml_connector_resolve"

DOC = """\
### Resolve a shipment by hand

Trigger this DAG (**Trigger** -> the form) to record a person's decision on one order of a pipeline. Every
decision is written to the ledger's audit trail with who made it and why; nothing else changes the order.

| action | for | what happens |
|---|---|---|
| `adopt` | an order whose label is uncertain (or any order without a label) | the label you found (tracking numbers) is recorded; the next pipeline run writes it back. Nothing is bought. |
| `rebuy` | an order whose label is uncertain, when you are sure no label exists | the next run looks the order up by reference once more (a label found then is adopted), otherwise buys a new label; a label of the abandoned attempt that turns up later is voided automatically. `reason` is required. |
| `retry` | a quarantined order whose data (settings, carrier account) was fixed | it is extracted again and the next run takes it. |

`by` defaults to the user who triggered the run. The same decisions from a shell:
`ml-connector shipments adopt|rebuy|retry PIPELINE ORDER ...`; list uncertain orders with
`ml-connector shipments list PIPELINE --state label_uncertain`.
"""


class ResolveShipmentOperator(BaseOperator):
    """Applies the decision in the run's params (``action``, ``pipeline``, ``order``, ``tracking_numbers``,
    ``reason``, ``by``) to the pipeline's ledger.

    :param settings_file: the pipelines file (default :func:`~ml_connector.settings.default_settings_file`);
        the pipeline's ``ledger_conn_id`` says which ledger.
    """

    ui_color = "#f7e3fd"

    def __init__(self, *, settings_file: str | Path | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("retry_policy", RETRY_POLICY)
        super().__init__(**kwargs)
        self.settings_file = settings_file

    def execute(self, context: Any) -> dict[str, Any]:
        params = context["params"]
        pipeline, order = params["pipeline"], (params.get("order") or "").strip()
        settings = load_settings(pipeline, self.settings_file)
        ledger = Ledger.from_airflow(settings.ledger_conn_id)
        dag_run = context["dag_run"]
        by = (params.get("by") or "").strip() or getattr(dag_run, "triggering_user_name", None) or "unknown"
        decisions = ShipmentDecisions(ledger, by=by, via=f"airflow {DAG_ID} {context['run_id']}")
        decision = decisions.decide(params["action"], pipeline, order,
                                    tracking_numbers=params.get("tracking_numbers") or "",
                                    reason=params.get("reason"))
        self.log.info("%s %s: %s (%s)", pipeline, order, decision.message, decision.state.value)
        return {"action": decision.action, "pipeline": pipeline, "order": decision.order_number,
                "state": decision.state.value, "changed": decision.changed, "by": by}


def pipeline_ids(settings_file: str | Path | None = None) -> list[str]:
    """The pipelines of the settings file (for the form's choice list); read at parse time, no other I/O."""
    try:
        document = yaml.safe_load(Path(settings_file or default_settings_file()).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []  # the pipelines' own DAGs report a broken file; here the field stays free text
    return sorted(k for k, v in document.items() if isinstance(v, dict))


def build_resolve_dag(dag_id: str = DAG_ID, *, settings_file: str | Path | None = None, **dag_kwargs: Any) -> DAG:
    """The ``ml_connector_resolve`` DAG: no schedule, one task, params for the Trigger form."""
    pipelines = pipeline_ids(settings_file)
    pipeline = (Param(pipelines[0], type="string", enum=pipelines, title="Pipeline",
                      description="the pipeline (DAG id) of the order")
                if pipelines else Param(None, type="string", title="Pipeline",
                                        description="the pipeline (DAG id) of the order"))
    options: dict[str, Any] = dict(
        dag_id=dag_id,
        description="Record a person's decision on a shipment: adopt a label, rebuy, or release a quarantine",
        schedule=None,
        start_date=datetime(2026, 11, 1),
        catchup=False,
        default_args={"owner": "ml-connector", "retries": 1, "retry_policy": RETRY_POLICY},
        doc_md=DOC,
        tags=["decisions", "ml-connector"],
        params={
            "action": Param("adopt", type="string", enum=list(ShipmentDecisions.ACTIONS), title="Action",
                            description="adopt a label found by hand, rebuy (uncertain orders), or retry (release "
                                        "a quarantine)"),
            "pipeline": pipeline,
            "order": Param(None, type="string", minLength=1, title="Order number",
                           description="the ERP order number, as in the ledger"),
            "tracking_numbers": Param("", type="string", title="Tracking number(s)",
                                      description="adopt only: the label's tracking number(s), lead package "
                                                  "first, separated by commas or blanks"),
            "reason": Param("", type="string", title="Reason",
                            description="why (required for rebuy; kept in the audit trail)"),
            "by": Param("", type="string", title="Decided by",
                        description="who decides (default: the user who triggered this run)"),
        },
    )
    options.update(dag_kwargs)
    with DAG(**options) as dag:
        ResolveShipmentOperator(task_id="resolve", settings_file=settings_file)
    return dag
