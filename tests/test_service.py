"""ShipmentService on its own (no Airflow): the exactly-once protocol over the ledger (SQLite and PostgreSQL)
and a scripted carrier."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ml_connector.carriers.protocol import Carrier, LabelPlan
from ml_connector.errors import (
    AmbiguousRequestError,
    InvalidAddress,
    RecordError,
    RetryableApiError,
    RetryableError,
)
from ml_connector.ledger import Ledger, ShipmentState
from ml_connector.models import (
    Address,
    AddressClassification,
    AddressStatus,
    AddressValidation,
    Label,
    Order,
    Package,
    ShipmentResult,
    TrackingResult,
    TrackingStatus,
)
from ml_connector.service import AlreadyQuarantined, NothingToDo, ShipmentService

PIPELINE = "test_pipeline"
SHIPPER = Address(name="Warehouse", lines=["1 Dock Rd"], city="Atlanta", state="GA", postal_code="30301",
                  country="US")


class ScriptedCarrier(Carrier):
    """A carrier whose answers a test sets: what Ship does, and what the reference index shows."""

    name = "scripted"

    def __init__(self) -> None:
        self.bought: list[str] = []  # order numbers, one per label really created
        self.index: dict[str, list[str]] = {}  # reference -> tracking numbers visible to a lookup
        self.lookups = 0
        self.ship_behaviour = "ok"  # ok | ambiguous_after_buying | ambiguous_before_buying | 429 | refuse
        self.index_lag = False  # labels bought do not show in the reference index yet
        self.address = AddressValidation(status=AddressStatus.VALID,
                                         classification=AddressClassification.RESIDENTIAL)

    def plan(self, order: Order) -> LabelPlan:
        if order.ship_method != "GROUND":
            raise RecordError("unknown ship method", record=order.number, field="ship_method")
        return LabelPlan("03", "Ground", [order.number])

    def validate_address(self, address: Address) -> AddressValidation | None:
        return self.address

    def buy_label(self, order, plan, *, shipper, residential) -> ShipmentResult:
        if self.ship_behaviour == "429":
            raise RetryableApiError("rate limited", vendor="scripted", status=429)
        if self.ship_behaviour == "refuse":
            raise RecordError("carrier refused the address", record=order.number, field="ship_to")
        if self.ship_behaviour == "ambiguous_before_buying":
            raise AmbiguousRequestError("no answer")
        number = f"1Z{len(self.bought) + 1:016d}"
        self.bought.append(order.number)
        if not self.index_lag:
            self.index.setdefault(plan.reference, []).append(number)
        if self.ship_behaviour == "ambiguous_after_buying":
            raise AmbiguousRequestError("connection dropped after sending")
        return ShipmentResult(shipment_id=number, tracking_numbers=[number],
                              labels=[Label(tracking_number=number, image_format="GIF", image=b"GIF89a")])

    def find_labels(self, plan: LabelPlan) -> ShipmentResult | None:
        self.lookups += 1
        numbers = self.index.get(plan.reference)
        return ShipmentResult(shipment_id=numbers[0], tracking_numbers=numbers) if numbers else None

    def void(self, shipment_id, tracking_numbers=()) -> bool:
        return True

    def track(self, tracking_number: str) -> TrackingResult:
        return TrackingResult(tracking_number=tracking_number, status=TrackingStatus.LABEL_CREATED)


def make_order(number: str = "SO-1", ship_method: str = "GROUND") -> Order:
    return Order(erp="test", erp_id=f"id-{number}", number=number, ship_method=ship_method,
                 ship_to=Address(name="Ada", lines=["1 Main St"], city="Rye", state="NY", postal_code="10580",
                                 country="US"),
                 packages=[Package(weight=Decimal("2.5"))])


@pytest.fixture
def carrier() -> ScriptedCarrier:
    return ScriptedCarrier()


def service(ledger: Ledger, carrier: Carrier, actor: str = "test", **kwargs) -> ShipmentService:
    return ShipmentService(ledger, carrier, actor=actor, **kwargs)


def checked_row(ledger: Ledger, carrier: Carrier, number: str = "SO-1"):
    row, _ = ledger.register_order(PIPELINE, make_order(number))
    service(ledger, carrier).check(row)
    return ledger.get(row.id)


def test_check_settles_service_and_residential_and_moves_to_address_ok(ledger, carrier):
    row, _ = ledger.register_order(PIPELINE, make_order())
    outcome = service(ledger, carrier).check(row)
    row = ledger.get(row.id)
    assert row.state is ShipmentState.ADDRESS_OK and row.service_code == "03" and row.residential is True
    assert outcome.message == "address valid, residential"
    with pytest.raises(NothingToDo):
        service(ledger, carrier).check(row)


def test_check_refuses_an_unmatched_address_naming_the_record(ledger, carrier):
    carrier.address = AddressValidation(status=AddressStatus.NO_CANDIDATES)
    row, _ = ledger.register_order(PIPELINE, make_order())
    with pytest.raises(InvalidAddress, match="order SO-1: address validation found no match") as caught:
        service(ledger, carrier).check(row)
    assert caught.value.field == "ship_to"


def test_check_reports_an_extraction_quarantine_without_recording_it_again(ledger, carrier):
    row = ledger.register_failure(PIPELINE, erp="test", erp_id="id-9", order_number="SO-9", modified_at=None,
                                  error="order SO-9: no street")
    with pytest.raises(AlreadyQuarantined, match="no street"):
        service(ledger, carrier).check(row)


def test_label_is_bought_once_and_reused_after(ledger, carrier):
    stored = []
    shipments = service(ledger, carrier, store_label=lambda order, label: stored.append(label) or "/x.gif")
    row = checked_row(ledger, carrier)
    first = shipments.create(row, shipper=SHIPPER)
    assert not first.reused and first.tracking_numbers == ["1Z0000000000000001"]
    again = shipments.create(ledger.get(row.id), shipper=SHIPPER)
    assert again.reused and again.tracking_numbers == first.tracking_numbers
    assert carrier.bought == ["SO-1"] and len(stored) == 1
    row = ledger.get(row.id)
    assert row.state is ShipmentState.LABELLED and row.label_path == "/x.gif"
    assert [a["to_state"] for a in ledger.audit_trail(row.id)] == [
        "extracted", "address_ok", "label_requested", "labelled"]


def test_label_requested_is_committed_before_the_purchase(ledger, carrier):
    seen = []

    class Watching(ScriptedCarrier):
        def buy_label(self, order, plan, **kwargs):
            seen.append(ledger.find(PIPELINE, order.erp_id).state)
            return super().buy_label(order, plan, **kwargs)

    watching = Watching()
    service(ledger, watching).create(checked_row(ledger, watching), shipper=SHIPPER)
    assert seen == [ShipmentState.LABEL_REQUESTED]


def test_an_unanswered_purchase_is_adopted_by_reference_not_bought_again(ledger, carrier):
    carrier.ship_behaviour = "ambiguous_after_buying"
    row = checked_row(ledger, carrier)
    outcome = service(ledger, carrier).create(row, shipper=SHIPPER)
    assert outcome.adopted and carrier.bought == ["SO-1"]
    assert ledger.get(row.id).state is ShipmentState.LABELLED
    assert "adopted" in [a["outcome"] for a in ledger.audit_trail(row.id)]


def test_an_unanswered_purchase_the_index_does_not_show_yet_is_never_bought_blindly(ledger, carrier):
    carrier.ship_behaviour, carrier.index_lag = "ambiguous_after_buying", True
    row = checked_row(ledger, carrier)
    with pytest.raises(AmbiguousRequestError):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    assert ledger.get(row.id).state is ShipmentState.LABEL_REQUESTED
    # the retry looks first; the index has caught up by now, so the label is adopted, not bought again
    carrier.ship_behaviour, carrier.index = "ok", {"SO-1": ["1Z0000000000000001"]}
    outcome = service(ledger, carrier, actor="retry").create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and carrier.bought == ["SO-1"] and carrier.lookups == 2


def test_a_row_left_in_label_requested_looks_up_before_buying(ledger, carrier):
    row = checked_row(ledger, carrier)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor="crashed-worker")
    carrier.index = {"SO-1": ["1Z9999999999999999"]}  # the crashed attempt did buy one
    outcome = service(ledger, carrier).create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and outcome.tracking_numbers == ["1Z9999999999999999"] and carrier.bought == []


def test_a_429_before_processing_returns_the_row_to_address_ok(ledger, carrier):
    carrier.ship_behaviour = "429"
    row = checked_row(ledger, carrier)
    with pytest.raises(RetryableError):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    assert ledger.get(row.id).state is ShipmentState.ADDRESS_OK and carrier.bought == []


def test_a_refusal_raises_the_record_error_and_buys_nothing(ledger, carrier):
    carrier.ship_behaviour = "refuse"
    row = checked_row(ledger, carrier)
    with pytest.raises(RecordError, match="refused the address"):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    assert carrier.bought == []


def test_another_workers_claim_is_respected(ledger, carrier):
    row = checked_row(ledger, carrier)
    assert ledger.claim(row.id, "other-worker")
    with pytest.raises(RetryableError, match="another worker"):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    assert carrier.bought == []


def test_the_claim_is_released_after_a_purchase(ledger, carrier):
    row = checked_row(ledger, carrier)
    service(ledger, carrier).create(row, shipper=SHIPPER)
    assert ledger.get(row.id).claimed_by is None


def test_write_back_moves_to_written_back_and_a_replay_has_nothing_to_do(ledger, carrier):
    written = []

    class Erp:
        def write_tracking(self, order, numbers, service_code):
            written.append((order.number, numbers))

    row = checked_row(ledger, carrier)
    shipments = service(ledger, carrier)
    shipments.create(row, shipper=SHIPPER)
    assert shipments.write_back(ledger.get(row.id), Erp()) == ["1Z0000000000000001"]
    assert ledger.get(row.id).state is ShipmentState.WRITTEN_BACK
    with pytest.raises(NothingToDo):
        shipments.write_back(ledger.get(row.id), Erp())
    assert written == [("SO-1", ["1Z0000000000000001"])]


def test_the_service_imports_no_airflow():
    import subprocess
    import sys

    code = ("import sys, ml_connector.service; "
            "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
