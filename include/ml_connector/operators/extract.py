"""``extract_orders``: read the ERP's released orders for the run's data interval into the ledger."""

from __future__ import annotations

import itertools
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
        items = source.extract(start, end)
        if pushes:  # documents named by push notifications are read now, whatever their modification time
            self.log.info("%d push notification(s) waiting: reading the documents they name", len(pushes))
            items = itertools.chain(items, source.pushed([json.loads(p["payload"]) for p in pushes]))
        for item in items:
            counts["orders"] += 1
            if isinstance(item, ExtractFailure):
                counts["unreadable"] += 1
                self.log.error("order %s cannot be shipped: %s", item.number, item.error)
                row = self.ledger.register_failure(
                    self.pipeline_id, erp=item.erp, erp_id=item.erp_id, order_number=item.number,
                    modified_at=item.modified_at.isoformat() if item.modified_at else None, error=item.error,
                    actor=actor)
            else:
                row, created = self.ledger.register_order(self.pipeline_id, item, actor=actor)
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
        lanes = make_lanes(rows, self.settings.max_lanes)
        counts.update(requeued=len(leftovers), lanes=len(lanes))
        self.log.info("%d order(s) read (%d new, %d unreadable, %d already done), %d re-queued -> %d lane(s)",
                      counts["orders"], counts["new"], counts["unreadable"], counts["already_done"],
                      counts["requeued"], counts["lanes"])
        context["ti"].xcom_push(key=COUNTS_KEY, value=counts)
        return lanes
