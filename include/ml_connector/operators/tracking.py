"""``poll_tracking``: keep the ERP's delivery status current from the carrier's scans."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from ml_connector.errors import ConnectorError, PermanentError, RetryableError
from ml_connector.ledger import ShipmentRow, ShipmentState
from ml_connector.models import TrackingResult, TrackingStatus
from ml_connector.operators.base import PipelineOperator

#: Tracking status -> ledger state. Statuses not listed (label created, not found, unknown) change nothing.
STATE_FOR_STATUS = {
    TrackingStatus.IN_TRANSIT: ShipmentState.IN_TRANSIT,
    TrackingStatus.OUT_FOR_DELIVERY: ShipmentState.IN_TRANSIT,
    TrackingStatus.DELIVERED: ShipmentState.DELIVERED,
    TrackingStatus.EXCEPTION: ShipmentState.EXCEPTION,
    TrackingStatus.VOIDED: ShipmentState.VOIDED,
}


class PollTrackingOperator(PipelineOperator):
    """Tracks every open package of the pipeline (bounded concurrency), stores new scans once, and writes a
    status change to the ERP. Runs after the lanes whatever they did (``trigger_rule=all_done``).

    A row that is labelled but not yet written back only collects scans: its status moves on the ERP once the
    write-back has happened, so a label is never reported as "in transit" on a document that lacks its 1Z.
    """

    ui_color = "#e8f8e3"

    def execute(self, context: Any) -> dict[str, int]:
        try:
            return self._poll(context)
        finally:
            self.close_sources()

    def _poll(self, context: Any) -> dict[str, int]:
        if not self.settings.track:
            raise AirflowSkipException("tracking is off for this pipeline (track: false)")
        rows = self.ledger.tracked(self.pipeline_id)
        if not rows:
            raise AirflowSkipException("no open packages to track")
        self.carrier_api = self.carrier()
        self.erp = self.source() if self.settings.writeback else None
        actor = self.actor(context)
        counts = {"packages": 0, "new_events": 0, "status_changes": 0, "errors": 0}
        failures: list[str] = []

        def follow(row: ShipmentRow) -> tuple[ShipmentRow, list[TrackingResult], ConnectorError | None]:
            try:
                return row, [self.carrier_api.track(n) for n in row.tracking_numbers], None
            except ConnectorError as exc:
                return row, [], exc

        with ThreadPoolExecutor(max_workers=self.settings.lane_concurrency) as pool:
            for row, results, error in pool.map(follow, rows):
                if error is not None:
                    counts["errors"] += 1
                    failures.append(f"{row.order_number}: {error}")
                    self.ledger.record_error(row.id, step="poll_tracking", error=error, actor=actor)
                    continue
                counts["packages"] += len(results)
                try:
                    changed, new = self._apply(row, results, actor)
                except (PermanentError, RetryableError) as exc:
                    counts["errors"] += 1
                    failures.append(f"{row.order_number}: {exc}")
                    self.ledger.record_error(row.id, step="poll_tracking", error=exc, actor=actor)
                    continue
                counts["new_events"] += new
                counts["status_changes"] += int(changed)
        self.log.info("tracked %(packages)d package(s): %(new_events)d new scan(s), %(status_changes)d status "
                      "change(s), %(errors)d error(s)", counts)
        if failures and counts["errors"] == len(rows):
            raise RetryableError("tracking failed for every order: " + "; ".join(failures[:5]))
        return counts

    def _apply(self, row: ShipmentRow, results: list[TrackingResult], actor: str) -> tuple[bool, int]:
        new_events = []
        for result in results:
            new_events += self.ledger.add_tracking_events(result.events, source="poll")
            self.ledger.set_package_status(result.tracking_number, result.status.value,
                                           result.delivered_at.isoformat() if result.delivered_at else None)
        lead = _lead_status(results)
        target = STATE_FOR_STATUS.get(lead.status) if lead else None
        if target is None or target is row.state:
            return False, len(new_events)
        if row.state is ShipmentState.LABELLED and self.settings.writeback:
            return False, len(new_events)  # wait for the write-back: the ERP must show the 1Z first
        if self.erp is not None:
            self.erp.write_status(row.order, lead)
        self.ledger.transition(
            row.id, target, step="poll_tracking", actor=actor,
            message=f"{lead.tracking_number}: {lead.status.value}"
                    + (f", delivered {lead.delivered_at.isoformat()}" if lead.delivered_at else ""),
            tracking_status=lead.status.value,
            delivered_at=lead.delivered_at.isoformat() if lead.delivered_at else None)
        return True, len(new_events)


_PRIORITY = [TrackingStatus.EXCEPTION, TrackingStatus.IN_TRANSIT, TrackingStatus.OUT_FOR_DELIVERY,
             TrackingStatus.DELIVERED, TrackingStatus.VOIDED]


def _lead_status(results: list[TrackingResult]) -> TrackingResult | None:
    """The package that speaks for a multi-package shipment: any exception first, then the least advanced
    (a shipment is delivered only when every package is)."""
    known = [r for r in results if r.status in _PRIORITY]
    if not known:
        return None
    return min(known, key=lambda r: _PRIORITY.index(r.status))
