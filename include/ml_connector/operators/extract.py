"""``extract_orders``: read the ERP's released orders for the run's data interval into the ledger."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from ml_connector.erp.protocol import ExtractFailure
from ml_connector.ledger import ShipmentState
from ml_connector.operators.base import Lane, PipelineOperator, make_lanes

#: Documents in these states need nothing more from a lane (tracking is poll_tracking's job).
_NOTHING_LEFT = frozenset({ShipmentState.WRITTEN_BACK, ShipmentState.IN_TRANSIT, ShipmentState.DELIVERED,
                           ShipmentState.EXCEPTION, ShipmentState.VOIDED, ShipmentState.RETURNED})


#: XCom key of the extraction counts: ``{"orders", "new", "unreadable", "already_done", "requeued", "lanes"}``.
COUNTS_KEY = "counts"


class ExtractOrdersOperator(PipelineOperator):
    """Reads orders modified in ``[data_interval_start - overlap, data_interval_end)``, records each in the
    ledger, adds the ledger rows earlier runs left unfinished, and returns the lanes for ``process_order``.

    A document that cannot be mapped (no postcode, missing weight...) is recorded as quarantined with the
    reason and still gets a lane, so that its failure is visible in the grid. XCom carries only ledger ids and
    order numbers, plus the run's counts under :data:`COUNTS_KEY` for the ``report`` step.
    """

    ui_color = "#e3f1fd"

    def window(self, context: Any) -> tuple[datetime, datetime]:
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None:  # asset-triggered or odd manual runs have no interval
            end = context.get("logical_date") or context["dag_run"].run_after
            start = end - timedelta(days=1)
        return start - timedelta(minutes=self.settings.overlap_minutes), end

    def execute(self, context: Any) -> list[Lane]:
        try:
            return self._extract(context)
        finally:
            self.close_sources()

    def _extract(self, context: Any) -> list[Lane]:
        start, end = self.window(context)
        actor = self.actor(context)
        source = self.source()
        self.log.info("reading %s orders modified in [%s, %s)", self.settings.erp, start.isoformat(),
                      end.isoformat())
        seen, counts = {}, {"orders": 0, "new": 0, "unreadable": 0, "already_done": 0}
        pushes = self.ledger.inbox_pending(source.push_source) if source.push_source else []
        erp = self.shared_budget("erp")  # the pages are read one at a time: one slot of the ERP's budget
        items = erp.call(lambda: list(source.extract(start, end)))
        if pushes:  # documents named by push notifications are read now, whatever their modification time
            self.log.info("%d push notification(s) waiting: reading the documents they name", len(pushes))
            items += erp.call(lambda: list(source.pushed([json.loads(p["payload"]) for p in pushes])))
        for item in items:
            if isinstance(item, ExtractFailure):
                self.log.error("order %s cannot be shipped: %s", item.number, item.error)
        # the whole extract in a few write transactions (batches), not one per order
        for item, (row, created) in zip(items, self.ledger.register_orders(self.pipeline_id, items, actor=actor),
                                        strict=True):
            counts["orders"] += 1
            if isinstance(item, ExtractFailure):
                counts["unreadable"] += 1
            else:
                counts["new"] += int(created)
            if row.state in _NOTHING_LEFT:
                counts["already_done"] += 1
                continue
            seen[row.id] = row
        for push in pushes:
            self.ledger.inbox_done(push["id"])
        leftovers = [r for r in self.ledger.unfinished(self.pipeline_id) if r.id not in seen]
        for row in leftovers:
            self.log.info("re-queued %s left in '%s' by an earlier run", row.order_number, row.state.value)
        rows = sorted(seen.values(), key=lambda r: r.order_number) + leftovers
        lanes = make_lanes(rows, self.settings.max_lanes, one_per_order_up_to=self.settings.lane_per_order_up_to,
                           parallel_lanes=self.settings.parallel_lanes, budget=self.settings.api_budget)
        counts.update(requeued=len(leftovers), lanes=len(lanes))
        self.log.info("%d order(s) read (%d new, %d unreadable, %d already done), %d re-queued -> %d lane(s)",
                      counts["orders"], counts["new"], counts["unreadable"], counts["already_done"],
                      counts["requeued"], counts["lanes"])
        context["ti"].xcom_push(key=COUNTS_KEY, value=counts)
        return lanes
