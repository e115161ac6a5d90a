"""``ShipmentService``: the exactly-once protocol as a plain class, with no Airflow import.

UPS Ship has no idempotency key, so "never a second label" is kept here, over the ledger and a
:class:`~ml_connector.carriers.protocol.Carrier`:

1. **check** an extracted order against the carrier's rules (service, references, address rules, weight) and
   the carrier's address validation; ``extracted`` -> ``address_ok``, or a :class:`RecordError` naming the
   record and field.
2. **create**: claim the row (conditional update: one worker at a time); a row already labelled returns its
   stored tracking numbers and calls nothing; a row left in ``label_requested`` (an earlier attempt crashed or
   got no answer) is looked up by reference and its label adopted before anything is bought; otherwise
   ``label_requested`` is committed *before* the purchase, and tracking numbers, charges and label paths are
   stored in the same transaction that moves the row to ``labelled``. A purchase that got no answer is looked
   up, never repeated blindly. The claim is released on the way out.
3. **write back**: the tracking number onto the ERP document (idempotent); ``labelled`` -> ``written_back``.

Operators, replay, reconciliation and webhook consumers all go through this class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ml_connector.carriers.protocol import Carrier, LabelPlan
from ml_connector.erp.protocol import OrderSource
from ml_connector.errors import (
    AmbiguousRequestError,
    InvalidAddress,
    PermanentError,
    RetryableError,
)
from ml_connector.ledger import Ledger, ShipmentRow, ShipmentState
from ml_connector.models import Address, AddressStatus, Label, Order

LabelStore = Callable[[Order, Label], str]


class NothingToDo(Exception):  # noqa: N818 - an outcome, not an error
    """This step has nothing to do for this order (already done, or stopped at an earlier step)."""


class AlreadyQuarantined(PermanentError):
    """The order was quarantined by an earlier step (its reason is in the ledger); reported, not recorded again."""


@dataclass(frozen=True)
class CheckOutcome:
    order_number: str
    service_code: str
    residential: bool | None
    message: str


@dataclass(frozen=True)
class LabelOutcome:
    """What :meth:`ShipmentService.create` ended with.

    :param reused: the label existed already (nothing was bought in this call).
    :param adopted: the label was found by reference (an earlier attempt bought it) and recorded.
    """

    order_number: str
    tracking_numbers: list[str] = field(default_factory=list)
    reused: bool = False
    adopted: bool = False


class ShipmentService:
    """Moves one pipeline's ledger rows through check -> label -> write-back, exactly once.

    :param ledger: the ledger (the only shared state).
    :param carrier: the carrier that validates addresses and buys labels.
    :param actor: who acts, for claims and the audit trail (an Airflow task instance, a CLI user...).
    :param claim_ttl_seconds: how long a claim holds before another worker may take it over.
    :param store_label: writes a label image somewhere durable and returns its path (labels never go into
        the ledger or XCom); ``None`` keeps no image.
    """

    def __init__(self, ledger: Ledger, carrier: Carrier, *, actor: str, claim_ttl_seconds: float = 900,
                 store_label: LabelStore | None = None) -> None:
        self.ledger = ledger
        self.carrier = carrier
        self.actor = actor
        self.claim_ttl_seconds = claim_ttl_seconds
        self.store_label = store_label

    # -- 1. check ------------------------------------------------------------------------------------------

    def check(self, row: ShipmentRow, *, validate_address: bool = True) -> CheckOutcome:
        """Check an extracted order before any label is bought and move it to ``address_ok``.

        :param validate_address: ask the carrier's address validation (which also settles residential vs
            commercial) where the carrier offers it.
        :raises AlreadyQuarantined: quarantined at extraction (the ledger has the reason).
        :raises NothingToDo: already past this step.
        :raises RecordError: the order cannot be shipped as it is (quarantine it).
        """
        if row.state is ShipmentState.QUARANTINED:
            raise AlreadyQuarantined(row.error or "quarantined")
        if row.state is not ShipmentState.EXTRACTED:
            raise NothingToDo(f"already past address validation ({row.state.value})")
        order = row.order
        plan = self.carrier.plan(order)
        residential = order.ship_to.residential
        message = "address not checked (validate_addresses is off)"
        if validate_address:
            result = self.carrier.validate_address(order.ship_to)
            if result is None:
                message = f"street-level validation is not offered for {order.ship_to.country}"
            else:
                _raise_for_unusable_address(order, result)
                if result.residential is not None:
                    residential = result.residential
                message = f"address valid, {result.classification.value}"
        self.ledger.transition(row.id, ShipmentState.ADDRESS_OK, step="validate_address", message=message,
                               residential=residential, service_code=plan.service_code, actor=self.actor)
        return CheckOutcome(order.number, plan.service_code, residential, message)

    # -- 2. create -----------------------------------------------------------------------------------------

    def create(self, row: ShipmentRow, *, shipper: Address | Callable[[], Address]) -> LabelOutcome:
        """Make sure the order has exactly one label: reuse, adopt, or buy.

        :param shipper: the shipper address (or a callable giving it, called only when a label is bought).
        :raises NothingToDo: the order is not ready for a label.
        :raises RetryableError: another worker holds the claim, or a transient error (retry later).
        :raises AmbiguousRequestError: the purchase got no answer and no label was found by reference yet.
        :raises RecordError: the carrier refused the order's data (no label exists).
        """
        if row.is_labelled:
            return _outcome(row, reused=True)
        if row.state not in (ShipmentState.ADDRESS_OK, ShipmentState.LABEL_REQUESTED):
            raise NothingToDo(f"not ready for a label ({row.state.value})")
        with self.ledger.claimed(row.id, self.actor, ttl_seconds=self.claim_ttl_seconds) as won:
            if not won:
                raise RetryableError(f"order {row.order_number}: another worker is creating this shipment")
            row = self.ledger.get(row.id)  # the state may have moved before we got the claim
            if row.is_labelled:
                return _outcome(row, reused=True)
            return self._create(row, shipper)

    def _create(self, row: ShipmentRow, shipper: Address | Callable[[], Address]) -> LabelOutcome:
        order = row.order
        plan = self.carrier.plan(order)
        if row.state is ShipmentState.LABEL_REQUESTED:
            # an earlier attempt may have bought the label: look before anything else is bought
            adopted = self._adopt(row, plan)
            if adopted is not None:
                return adopted
        else:
            row = self.ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment",
                                         actor=self.actor,
                                         message=f"buying a {self.carrier.name} label ({plan.service_name})",
                                         service_code=plan.service_code, reference=plan.reference)
        address = shipper() if callable(shipper) else shipper
        try:
            result = self.carrier.buy_label(order, plan, shipper=address, residential=row.residential)
        except AmbiguousRequestError:
            adopted = self._adopt(row, plan)
            if adopted is not None:
                return adopted
            raise
        except PermanentError:
            raise  # refused: no label exists; the caller quarantines the order with the carrier's reason
        except RetryableError as exc:
            if getattr(exc, "status", None) == 429:
                # refused before processing: nothing was bought, back to the previous state
                self.ledger.transition(row.id, ShipmentState.ADDRESS_OK, step="create_shipment", actor=self.actor,
                                       expect=[ShipmentState.LABEL_REQUESTED],
                                       message=f"{self.carrier.name} rate limit (429); no label bought, will retry")
            raise
        paths = {}
        if self.store_label is not None:
            paths = {label.tracking_number: self.store_label(order, label) for label in result.labels}
        row = self.ledger.record_label(row.id, result, label_paths=paths, actor=self.actor)
        return _outcome(row, reused=False)

    def _adopt(self, row: ShipmentRow, plan: LabelPlan) -> LabelOutcome | None:
        found = self.carrier.find_labels(plan)
        if found is None:
            return None
        row = self.ledger.record_label(row.id, found, label_paths={}, actor=self.actor, adopted=True)
        return _outcome(row, reused=True, adopted=True)

    # -- 3. write back -------------------------------------------------------------------------------------

    def write_back(self, row: ShipmentRow, source: OrderSource | None) -> list[str]:
        """Write the tracking number(s) onto the ERP document and move the row to ``written_back``.

        :param source: the ERP; ``None`` when the pipeline's write-back is off (the row just moves on).
        :raises NothingToDo: nothing to write (not labelled, or written already).
        """
        if row.state is not ShipmentState.LABELLED:
            raise NothingToDo(f"nothing to write back ({row.state.value})")
        if source is None:
            self.ledger.transition(row.id, ShipmentState.WRITTEN_BACK, step="writeback", actor=self.actor,
                                   message="write-back is off for this pipeline")
            return row.tracking_numbers
        source.write_tracking(row.order, row.tracking_numbers, row.service_code)
        self.ledger.transition(row.id, ShipmentState.WRITTEN_BACK, step="writeback", actor=self.actor,
                               message=f"{', '.join(row.tracking_numbers)} written to {row.erp} {row.order_number}",
                               error=None, error_step=None)
        return row.tracking_numbers


def _outcome(row: ShipmentRow, *, reused: bool, adopted: bool = False) -> LabelOutcome:
    return LabelOutcome(row.order_number, list(row.tracking_numbers), reused=reused, adopted=adopted)


def _raise_for_unusable_address(order: Order, result: Any) -> None:
    if result.status is AddressStatus.NO_CANDIDATES:
        raise InvalidAddress(
            "address validation found no match for the ship-to address "
            f"({', '.join(order.ship_to.lines)}, {order.ship_to.city} {order.ship_to.postal_code or ''}); "
            "correct it in the ERP", record=order.number, field="ship_to")
    if result.status is AddressStatus.AMBIGUOUS:
        options = "; ".join(
            f"{' '.join(c.lines)}, {c.city} {c.state or ''} {c.postal_code or ''}".strip()
            for c in result.candidates[:3])
        raise InvalidAddress(f"the ship-to address is ambiguous; the carrier suggests: {options}. Pick one in "
                             "the ERP", record=order.number, field="ship_to")
