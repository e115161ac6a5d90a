"""The ``process_order`` lane: ``validate_address`` -> ``create_shipment`` -> ``writeback``.

Thin on purpose: each operator builds the :class:`~ml_connector.service.ShipmentService` and calls it per
order; the exactly-once protocol and the carrier's rules live there and in ``carriers/<name>``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from ml_connector.ledger import ShipmentRow
from ml_connector.models import Label, Order
from ml_connector.operators.base import LaneOperator, LaneReport


class ValidateAddressOperator(LaneOperator):
    """Checks each order before any label is bought: ship method known, weights and references usable, the
    address deliverable by the carrier's rules and confirmed by its address validation (which also settles
    residential vs commercial)."""

    step = "validate_address"

    def before_lane(self, context: Any) -> None:
        self.shipments = self.service(context)

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        outcome = self.shipments.check(row, validate_address=self.settings.validate_addresses)
        return {"order": outcome.order_number, "residential": outcome.residential, "service": outcome.service_code}


class CreateShipmentOperator(LaneOperator):
    """Buys one label per order, exactly once (see :class:`~ml_connector.service.ShipmentService`): a retry,
    a clear, a re-run or a backfill returns the stored tracking number, and an order whose purchase was ever
    attempted is looked up by reference before anything is bought.

    A purchase that got no clear answer leaves the order ``label_uncertain``: it is never bought again
    automatically; it is looked up by reference here and in later runs (with backoff, for the pipeline's
    ``settle_window_hours``) and adopted once the carrier's index shows it. Until then its lane **fails** (red,
    no Airflow retry) with the reason, the next lookup and the commands that resolve it: the order has no label
    recorded and nothing written back, so a green lane would hide it, and retrying the task cannot make the
    carrier's index catch up sooner. The other orders of a batched lane go on.
    """

    step = "create_shipment"

    def before_lane(self, context: Any) -> None:
        self.shipments = self.service(context, store_label=self._store_label,
                                      settle_window_seconds=self.settings.settle_window_hours * 3600,
                                      lookup_backoff_seconds=self.settings.lookup_backoff_seconds)
        # once per lane, before any order: a wrong ship-from is configuration and fails the task (an ERP call: it
        # holds a slot of the ERP's in-flight budget)
        self.shipper = self.shared_budget("erp").call(self.source().ship_from)

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        outcome = self.shipments.create(row, shipper=self.shipper)
        if outcome.uncertain:
            self.log.error("%s", outcome.message)
            return {"order": outcome.order_number, "tracking_numbers": [], "reused": False, "uncertain": True,
                    "message": outcome.message}
        if outcome.adopted:
            self.log.warning("order %s: adopted label %s created by an earlier attempt", outcome.order_number,
                             ", ".join(outcome.tracking_numbers))
        elif not outcome.reused:
            self.log.info("order %s: label %s bought", outcome.order_number, ", ".join(outcome.tracking_numbers))
        if outcome.voided:
            self.log.warning("order %s: voided %s, the label of an attempt abandoned by a rebuy",
                             outcome.order_number, ", ".join(outcome.voided))
        return {"order": outcome.order_number, "tracking_numbers": outcome.tracking_numbers,
                "reused": outcome.reused}

    def _finish(self, report: LaneReport, context: Any) -> list[dict[str, Any]]:
        uncertain = [d for d in report.done if d.get("uncertain")]
        text = "\n".join(f"  {d['order']}: {d['message']}" for d in uncertain)
        summary = (f"{len(uncertain)} order(s) in this lane are label_uncertain (a label may exist; nothing is "
                   f"bought again automatically):\n{text}")
        try:
            done = super()._finish(report, context)
        except AirflowFailException as exc:
            if uncertain:
                raise AirflowFailException(f"{exc}\n{summary}") from None
            raise
        if uncertain:
            # parked like a quarantine: the report step lists it (and fails the run when it is new)
            self._say_why(context, "uncertain", [(d["order"], d["message"]) for d in uncertain])
            raise AirflowFailException(summary)
        return done

    def _store_label(self, order: Order, label: Label) -> str:
        root = ObjectStoragePath(self.settings.label_root()) / self.pipeline_id
        root.mkdir(parents=True, exist_ok=True)
        target = root / f"{_safe(order.number)}_{label.tracking_number}.{label.image_format.lower()}"
        target.write_bytes(label.image)
        return str(target)


class WritebackOperator(LaneOperator):
    """Writes the tracking number(s) onto the ERP document. A failed write keeps the row ``labelled`` with the
    error, so the next run (or clearing this task) replays it without buying a new label."""

    step = "writeback"
    api = "erp"

    def before_lane(self, context: Any) -> None:
        self.shipments = self.service(context, load_label=_load_label)
        self.erp = self.source() if self.settings.writeback else None

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        numbers = self.shipments.write_back(row, self.erp)
        return {"order": row.order_number, "tracking_numbers": numbers}


def _load_label(path: str) -> bytes:
    """A label image stored by :meth:`CreateShipmentOperator._store_label`, for ERPs that attach the file."""
    return ObjectStoragePath(path).read_bytes()


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value)
