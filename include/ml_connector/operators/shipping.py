"""The ``process_order`` lane: ``validate_address`` -> ``create_shipment`` -> ``writeback``."""

from __future__ import annotations

from datetime import date
from typing import Any

from airflow.sdk import ObjectStoragePath

from ml_connector.carriers import ups as ups_mapping
from ml_connector.errors import (
    AmbiguousRequestError,
    InvalidAddress,
    MissingWeight,
    PermanentError,
    ReferenceTooLong,
    RetryableError,
)
from ml_connector.ledger import ShipmentRow, ShipmentState
from ml_connector.models import AddressStatus, Order, ShipmentResult
from ml_connector.operators.base import LaneOperator, Skip

MAX_REFERENCE = 35  # UPS ReferenceNumber.Value maxLength (Shipping.yaml #/c/s/Package_ReferenceNumber)
VALIDATED_COUNTRIES = frozenset({"US", "PR"})  # UPS street-level validation covers only these


def references(order: Order, fields: list[str]) -> list[str]:
    """The values stamped in the label's reference numbers, in order; a value over 35 characters is a
    record error (never truncated: a cut reference would not match the ERP document any more)."""
    values = []
    for name in fields:
        value = order.number if name == "number" else order.customer_reference
        if not value:
            continue
        if len(value) > MAX_REFERENCE:
            label = "order number" if name == "number" else "customer reference (external document number)"
            raise ReferenceTooLong(
                f"the {label} '{value}' is {len(value)} characters; UPS reference numbers hold at most "
                f"{MAX_REFERENCE}. Shorten it in the ERP or drop '{name}' from the pipeline's reference_fields",
                record=order.number, field=name)
        values.append(value)
    return values


class ValidateAddressOperator(LaneOperator):
    """Checks each order before any label is bought: ship method known, weights and references usable, and
    the ship-to address confirmed by UPS Address Validation, which also settles residential vs commercial."""

    step = "validate_address"

    def before_lane(self, context: Any) -> None:
        self.ups = self.ups_hook() if self.settings.validate_addresses else None

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        if row.state is ShipmentState.QUARANTINED:
            # quarantined at extraction (unreadable document): this lane is where a person sees why
            raise _AlreadyQuarantined(row.error or "quarantined")
        if row.state is not ShipmentState.EXTRACTED:
            raise Skip(f"already past address validation ({row.state.value})")
        order = row.order
        service = ups_mapping.resolve_service(order.ship_method, self.settings.service_map, record=order.number)
        references(order, self.settings.reference_fields)
        if not order.packages:
            raise MissingWeight("the order has no package weight", record=order.number, field="weight")
        residential = order.ship_to.residential
        message = "address not checked (validate_addresses is off)"
        if self.ups is not None and order.ship_to.country in VALIDATED_COUNTRIES:
            result = self.ups.validate_address(order.ship_to)
            if result.status is AddressStatus.NO_CANDIDATES:
                raise InvalidAddress(
                    "UPS Address Validation found no match for the ship-to address "
                    f"({', '.join(order.ship_to.lines)}, {order.ship_to.city} {order.ship_to.postal_code or ''}); "
                    "correct it in the ERP", record=order.number, field="ship_to")
            if result.status is AddressStatus.AMBIGUOUS:
                options = "; ".join(
                    f"{' '.join(c.lines)}, {c.city} {c.state or ''} {c.postal_code or ''}".strip()
                    for c in result.candidates[:3])
                raise InvalidAddress(
                    f"the ship-to address is ambiguous; UPS suggests: {options}. Pick one in the ERP",
                    record=order.number, field="ship_to")
            residential = result.residential if result.residential is not None else residential
            message = f"address valid, {result.classification.value}"
        elif order.ship_to.country not in VALIDATED_COUNTRIES:
            message = f"street-level validation is not offered for {order.ship_to.country}"
        self.ledger.transition(row.id, ShipmentState.ADDRESS_OK, step=self.step, message=message,
                               residential=residential, service_code=service, actor=self.actor(context))
        return {"order": order.number, "residential": residential, "service": service}

    def _quarantine(self, row: ShipmentRow, exc: PermanentError, actor: str) -> None:
        if not isinstance(exc, _AlreadyQuarantined):
            super()._quarantine(row, exc, actor)


class _AlreadyQuarantined(PermanentError):
    """Reports a row quarantined by an earlier step without recording it twice."""


class CreateShipmentOperator(LaneOperator):
    """Buys one UPS label per order, exactly once.

    Protocol (design.md, "Ledger"): claim the row; a row already labelled returns its stored 1Z without
    calling UPS; a row left in ``label_requested`` by a crashed attempt is looked up by reference and its
    label adopted before anything is bought; the state moves to ``label_requested`` (committed) before Ship is
    called, and tracking numbers + label paths are stored in the same transaction that moves it to
    ``labelled``. A Ship call that gets no answer is never blindly retried.
    """

    step = "create_shipment"

    def before_lane(self, context: Any) -> None:
        self.ups = self.ups_hook()
        self.shipper = self.erp_adapter().ship_from()

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        if row.is_labelled:
            return self._result(row, reused=True)
        if row.state not in (ShipmentState.ADDRESS_OK, ShipmentState.LABEL_REQUESTED):
            raise Skip(f"not ready for a label ({row.state.value})")
        actor = self.actor(context)
        with self.ledger.claimed(row.id, actor, ttl_seconds=self.settings.claim_ttl_seconds) as won:
            if not won:
                raise RetryableError(f"order {row.order_number}: another worker is creating this shipment")
            row = self.ledger.get(row.id)  # the state may have moved before we got the claim
            if row.is_labelled:
                return self._result(row, reused=True)
            return self._create(row, actor)

    def _create(self, row: ShipmentRow, actor: str) -> dict[str, Any]:
        order = row.order
        refs = references(order, self.settings.reference_fields)
        service = ups_mapping.resolve_service(order.ship_method, self.settings.service_map, record=order.number)
        if row.state is ShipmentState.LABEL_REQUESTED:
            adopted = self._adopt(row, refs[0], actor)
            if adopted is not None:
                return adopted
        else:
            row = self.ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step=self.step, actor=actor,
                                         message=f"buying a UPS label (service {service})",
                                         service_code=service, reference=refs[0])
        try:
            result = self.ups.create_shipment(
                order, service_code=service, shipper=self.shipper, reference=refs[0],
                extra_references=refs[1:], residential=row.residential,
                negotiated_rates=self.settings.negotiated_rates)
        except AmbiguousRequestError:
            # UPS may have created the label: look before anything else is bought
            adopted = self._adopt(row, refs[0], actor)
            if adopted is not None:
                return adopted
            raise
        except PermanentError:
            raise  # UPS refused: no label exists; the lane quarantines the order with UPS's code and message
        except RetryableError as exc:
            if getattr(exc, "status", None) == 429:
                # refused before processing: no label was bought, back to the previous state
                self.ledger.transition(row.id, ShipmentState.ADDRESS_OK, step=self.step, actor=actor,
                                       expect=[ShipmentState.LABEL_REQUESTED],
                                       message="UPS rate limit (429); no label bought, will retry")
            raise
        paths = self._store_labels(order, result)
        row = self.ledger.record_label(row.id, result, label_paths=paths, actor=actor)
        self.log.info("order %s: label %s bought", order.number, ", ".join(result.tracking_numbers))
        return self._result(row, reused=False)

    def _adopt(self, row: ShipmentRow, reference: str, actor: str) -> dict[str, Any] | None:
        """Find a label an earlier (crashed) attempt bought under ``reference`` and record it."""
        found = [r for r in self.ups.track_by_reference(reference, today=date.today())
                 if reference in r.reference_numbers]
        if not found:
            self.log.info("order %s: no earlier label found under reference %s", row.order_number, reference)
            return None
        numbers = sorted({r.tracking_number for r in found})
        result = ShipmentResult(shipment_id=found[0].shipment_id or numbers[0], tracking_numbers=numbers,
                                warnings=["label adopted from an earlier attempt; recover the image with UPS "
                                          "label recovery if it is needed"])
        row = self.ledger.record_label(row.id, result, label_paths={}, actor=actor, adopted=True)
        self.log.warning("order %s: adopted label %s created by an earlier attempt", row.order_number,
                         ", ".join(numbers))
        return self._result(row, reused=True)

    def _store_labels(self, order: Order, result: ShipmentResult) -> dict[str, str]:
        root = ObjectStoragePath(self.settings.label_root()) / self.pipeline_id
        root.mkdir(parents=True, exist_ok=True)
        paths = {}
        for label in result.labels:
            target = root / f"{_safe(order.number)}_{label.tracking_number}.{label.image_format.lower()}"
            target.write_bytes(label.image)
            paths[label.tracking_number] = str(target)
        return paths

    @staticmethod
    def _result(row: ShipmentRow, *, reused: bool) -> dict[str, Any]:
        return {"order": row.order_number, "tracking_numbers": row.tracking_numbers, "reused": reused}


class WritebackOperator(LaneOperator):
    """Writes the 1Z number(s) onto the ERP document. A failed write keeps the row ``labelled`` with the
    error, so the next run (or clearing this task) replays it without buying a new label."""

    step = "writeback"

    def before_lane(self, context: Any) -> None:
        self.adapter = self.erp_adapter() if self.settings.writeback else None

    def process(self, row: ShipmentRow, context: Any) -> dict[str, Any]:
        if row.state is not ShipmentState.LABELLED:
            raise Skip(f"nothing to write back ({row.state.value})")
        if self.adapter is None:
            self.ledger.transition(row.id, ShipmentState.WRITTEN_BACK, step=self.step, actor=self.actor(context),
                                   message="write-back is off for this pipeline")
            return {"order": row.order_number, "tracking_numbers": row.tracking_numbers}
        self.adapter.write_tracking(row.order, row.tracking_numbers, row.service_code)
        self.ledger.transition(row.id, ShipmentState.WRITTEN_BACK, step=self.step, actor=self.actor(context),
                               message=f"{', '.join(row.tracking_numbers)} written to {row.erp} {row.order_number}",
                               error=None, error_step=None)
        return {"order": row.order_number, "tracking_numbers": row.tracking_numbers}


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value)
