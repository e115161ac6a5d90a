"""ShipmentService on its own (no Airflow): the exactly-once protocol over the ledger (SQLite and PostgreSQL)
and a scripted carrier: buying, adopting, the label_uncertain state with its lookups by reference, and a
person's decisions (ShipmentDecisions)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ml_connector.carriers.protocol import Carrier, LabelPlan
from ml_connector.errors import (
    AmbiguousRequestError,
    AuthenticationError,
    InvalidAddress,
    PermanentApiError,
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
        self.voided: list[str] = []
        # ok | ambiguous_after_buying | ambiguous_before_buying | 5xx_after_buying | 429 | never_sent | auth
        # | refuse | bug_after_buying
        self.ship_behaviour = "ok"
        self.lookup_behaviour = "ok"  # ok | permanent | retryable
        self.index_lag = False  # labels bought do not show in the reference index yet
        self.lagging: dict[str, list[str]] = {}  # reference -> bought numbers the index does not show yet
        self.address = AddressValidation(status=AddressStatus.VALID,
                                         classification=AddressClassification.RESIDENTIAL)

    def catch_up(self) -> None:
        """The reference index shows every label bought so far."""
        for reference, numbers in self.lagging.items():
            self.index.setdefault(reference, []).extend(numbers)
        self.lagging = {}

    def plan(self, order: Order) -> LabelPlan:
        if order.ship_method != "GROUND":
            raise RecordError("unknown ship method", record=order.number, field="ship_method")
        return LabelPlan("03", "Ground", [order.number])

    def validate_address(self, address: Address) -> AddressValidation | None:
        return self.address

    def buy_label(self, order, plan, *, shipper, residential) -> ShipmentResult:
        before = {"429": RetryableApiError("rate limited", vendor="scripted", status=429),
                  "never_sent": RetryableError("connection refused; the request never left"),
                  "auth": AuthenticationError("client secret refused", vendor="scripted", status=401),
                  "refuse": RecordError("carrier refused the address", record=order.number, field="ship_to"),
                  "ambiguous_before_buying": AmbiguousRequestError("no answer")}
        if self.ship_behaviour in before:
            raise before[self.ship_behaviour]
        number = f"1Z{len(self.bought) + 1:016d}"
        self.bought.append(order.number)
        (self.lagging if self.index_lag else self.index).setdefault(plan.reference, []).append(number)
        if self.ship_behaviour == "ambiguous_after_buying":
            raise AmbiguousRequestError("connection dropped after sending")
        if self.ship_behaviour == "5xx_after_buying":
            raise RetryableApiError("internal error", vendor="scripted", status=500)
        if self.ship_behaviour == "bug_after_buying":
            raise TypeError("cannot read the answer")
        return ShipmentResult(shipment_id=number, tracking_numbers=[number],
                              labels=[Label(tracking_number=number, image_format="GIF", image=b"GIF89a")])

    def find_labels(self, plan: LabelPlan) -> ShipmentResult | None:
        self.lookups += 1
        if self.lookup_behaviour == "permanent":
            raise PermanentApiError("reference lookup refused", vendor="scripted", status=400)
        if self.lookup_behaviour == "retryable":
            raise RetryableApiError("tracking is down", vendor="scripted", status=503)
        numbers = [n for n in self.index.get(plan.reference, []) if n not in self.voided]
        return ShipmentResult(shipment_id=numbers[0], tracking_numbers=numbers) if numbers else None

    def void(self, shipment_id, tracking_numbers=()) -> bool:
        self.voided.extend(tracking_numbers or [shipment_id])
        return True

    def track(self, tracking_number: str) -> TrackingResult:
        return TrackingResult(tracking_number=tracking_number, status=TrackingStatus.LABEL_CREATED)


class Clock:
    """Epoch seconds that a test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
    clock = Clock()
    carrier.ship_behaviour, carrier.index_lag = "ambiguous_after_buying", True
    row = checked_row(ledger, carrier)
    outcome = service(ledger, carrier, clock=clock).create(row, shipper=SHIPPER)
    assert outcome.uncertain and not outcome.tracking_numbers and "label_uncertain" in outcome.message
    row = ledger.get(row.id)
    assert row.state is ShipmentState.LABEL_UNCERTAIN and carrier.lookups == 1  # looked up at once
    # a retry whose lookup is not due yet calls nothing at all
    carrier.ship_behaviour = "ok"
    assert service(ledger, carrier, actor="retry", clock=clock).create(row, shipper=SHIPPER).uncertain
    assert carrier.lookups == 1 and carrier.bought == ["SO-1"]
    # once due, it looks again; the index has caught up by now, so the label is adopted, not bought again
    clock.advance(60)
    carrier.catch_up()
    outcome = service(ledger, carrier, actor="retry", clock=clock).create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and carrier.bought == ["SO-1"] and carrier.lookups == 2
    row = ledger.get(row.id)
    assert row.state is ShipmentState.LABELLED and row.tracking_numbers == ["1Z0000000000000001"]
    assert (row.uncertain_since, row.next_lookup_at, row.lookup_until) == (None, None, None)
    assert [a["to_state"] for a in ledger.audit_trail(row.id)] == [
        "extracted", "address_ok", "label_requested", "label_uncertain", "label_uncertain", "labelled"]


def test_a_row_left_in_label_requested_looks_up_before_buying(ledger, carrier):
    row = checked_row(ledger, carrier)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor="crashed-worker")
    carrier.index = {"SO-1": ["1Z9999999999999999"]}  # the crashed attempt did buy one
    outcome = service(ledger, carrier).create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and outcome.tracking_numbers == ["1Z9999999999999999"] and carrier.bought == []


def uncertain_row(ledger, carrier, clock, number="SO-1", behaviour="ambiguous_after_buying", **kwargs):
    """An order whose purchase bought a label the reference index does not show yet: label_uncertain."""
    carrier.ship_behaviour, carrier.index_lag = behaviour, True
    row = checked_row(ledger, carrier, number)
    outcome = service(ledger, carrier, clock=clock, **kwargs).create(row, shipper=SHIPPER)
    assert outcome.uncertain, outcome
    carrier.ship_behaviour = "ok"
    return ledger.get(row.id)


@pytest.mark.parametrize("behaviour", ["ambiguous_after_buying", "5xx_after_buying"])
def test_an_unknown_outcome_is_label_uncertain_and_never_bought_again(ledger, carrier, behaviour):
    clock = Clock()
    row = uncertain_row(ledger, carrier, clock, behaviour=behaviour)
    assert row.state is ShipmentState.LABEL_UNCERTAIN and row.purchase_attempted
    assert row.uncertain_since == clock.now and row.lookup_until == clock.now + 6 * 3600
    assert "a label may exist" in row.error and "ml-connector shipments rebuy test_pipeline SO-1" in row.error
    for _ in range(5):  # retries, clears, later runs: never a purchase
        clock.advance(3600)
        assert service(ledger, carrier, clock=clock).create(ledger.get(row.id), shipper=SHIPPER).uncertain
    assert carrier.bought == ["SO-1"] and ledger.get(row.id).state is ShipmentState.LABEL_UNCERTAIN


def test_lookups_back_off_and_the_last_one_falls_on_the_end_of_the_window(ledger, carrier):
    clock = Clock()
    start = clock.now
    shipments = service(ledger, carrier, clock=clock, settle_window_seconds=3600, lookup_backoff_seconds=60)
    row = uncertain_row(ledger, carrier, clock, settle_window_seconds=3600, lookup_backoff_seconds=60)
    due = [row.next_lookup_at - start]
    while row.next_lookup_at is not None:
        clock.now = row.next_lookup_at
        shipments.create(row, shipper=SHIPPER)
        row = ledger.get(row.id)
        due.append(None if row.next_lookup_at is None else row.next_lookup_at - start)
    assert due == [60, 180, 420, 900, 1860, 3600, None]  # doubling, then the window's end, then a person
    assert row.lookup_attempts == 7 and carrier.lookups == 7 and carrier.bought == ["SO-1"]


def test_after_the_settle_window_a_person_is_asked_and_nothing_runs_by_itself(ledger, carrier):
    clock = Clock()
    row = uncertain_row(ledger, carrier, clock, settle_window_seconds=600)
    clock.advance(601)
    outcome = service(ledger, carrier, clock=clock, settle_window_seconds=600).create(row, shipper=SHIPPER)
    row = ledger.get(row.id)
    assert outcome.uncertain and row.needs_decision and row.next_lookup_at is None
    assert "settle window (10 min) is over" in row.error and "a person decides" in row.error
    assert "ml-connector shipments adopt test_pipeline SO-1" in row.error
    assert ledger.audit_trail(row.id)[-1]["outcome"] == "needs_decision"
    assert row.id not in [r.id for r in ledger.unfinished(PIPELINE)]  # listed for a person, not re-queued
    assert [r.id for r in ledger.list(PIPELINE, {ShipmentState.LABEL_UNCERTAIN})] == [row.id]
    lookups = carrier.lookups
    clock.advance(86400)
    carrier.catch_up()
    assert service(ledger, carrier, clock=clock).create(row, shipper=SHIPPER).uncertain
    assert carrier.lookups == lookups and carrier.bought == ["SO-1"]


def test_uncertain_rows_with_a_lookup_pending_are_unfinished_work(ledger, carrier):
    row = uncertain_row(ledger, carrier, Clock())
    assert row.id in [r.id for r in ledger.unfinished(PIPELINE)]


def test_a_crashed_attempt_found_after_its_claim_expired_is_uncertain_not_bought(ledger, carrier):
    clock = Clock()
    row = checked_row(ledger, carrier)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor="crashed-worker")
    assert ledger.claim(row.id, "crashed-worker", ttl_seconds=-1)  # its claim has expired
    outcome = service(ledger, carrier, clock=clock).create(ledger.get(row.id), shipper=SHIPPER)
    row = ledger.get(row.id)
    assert outcome.uncertain and row.state is ShipmentState.LABEL_UNCERTAIN and carrier.lookups == 1
    assert "interrupted before its outcome was recorded" in row.error
    assert carrier.bought == []


def test_a_row_claimed_by_a_live_worker_is_left_alone(ledger, carrier):
    row = checked_row(ledger, carrier)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor="busy-worker")
    assert ledger.claim(row.id, "busy-worker")
    with pytest.raises(RetryableError, match="another worker"):
        service(ledger, carrier).create(ledger.get(row.id), shipper=SHIPPER)
    assert ledger.get(row.id).state is ShipmentState.LABEL_REQUESTED and carrier.lookups == 0


def test_f2_a_refused_lookup_then_an_erp_edit_buys_no_second_label(ledger, carrier):
    """F2: a permanent error on the reference lookup used to quarantine the order, losing the fact that a label
    may exist; the ERP edit re-opened it and it was bought again without a lookup."""
    clock = Clock()
    row = checked_row(ledger, carrier)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor="crashed-worker",
                      reference="SO-1", service_code="03")
    carrier.lagging = {"SO-1": ["1Z0000000000009999"]}  # the crashed attempt bought one; not indexed yet
    carrier.lookup_behaviour = "permanent"
    outcome = service(ledger, carrier, clock=clock).create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.uncertain and "reference lookup refused" in outcome.message
    # what a lane does with a permanent error: quarantine. The ledger refuses to hide a possible label.
    row = ledger.quarantine(row.id, step="create_shipment", error="order SO-1: reference lookup refused")
    assert row.state is ShipmentState.LABEL_UNCERTAIN
    # the ERP edit: the order is extracted again with a new modification time
    edited = make_order().model_copy(update={"modified_at": datetime(2026, 11, 20, tzinfo=UTC)})
    row, created = ledger.register_order(PIPELINE, edited)
    assert not created and row.state is ShipmentState.LABEL_UNCERTAIN
    for _ in range(3):  # the next runs: the lookup still fails, nothing is bought
        clock.advance(3600)
        assert service(ledger, carrier, clock=clock).create(ledger.get(row.id), shipper=SHIPPER).uncertain
    carrier.lookup_behaviour = "ok"
    carrier.catch_up()
    clock.advance(3600)
    outcome = service(ledger, carrier, clock=clock).create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and outcome.tracking_numbers == ["1Z0000000000009999"] and carrier.bought == []


def test_f2_a_quarantined_order_that_once_reached_label_requested_looks_up_before_buying(ledger, carrier):
    """The life-long fact: an order quarantined after label_requested (a ledger of an older release) and
    re-opened by an ERP edit is looked up before anything is bought."""
    row = checked_row(ledger, carrier)
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", actor="old-release",
                      reference="SO-1")
    ledger.quarantine(row.id, step="create_shipment", error="order SO-1: lookup refused")
    carrier.index = {"SO-1": ["1Z0000000000009999"]}
    edited = make_order().model_copy(update={"modified_at": datetime(2026, 11, 20, tzinfo=UTC)})
    row, _ = ledger.register_order(PIPELINE, edited)
    assert row.state is ShipmentState.EXTRACTED and row.purchase_attempted
    shipments = service(ledger, carrier)
    shipments.check(row)
    outcome = shipments.create(ledger.get(row.id), shipper=SHIPPER)
    assert outcome.adopted and carrier.bought == [] and carrier.lookups == 1


def test_a_refused_order_fixed_in_the_erp_is_looked_up_then_bought_once(ledger, carrier):
    carrier.ship_behaviour = "refuse"
    row = checked_row(ledger, carrier)
    with pytest.raises(RecordError):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    ledger.quarantine(row.id, step="create_shipment", error="refused")
    assert ledger.get(row.id).state is ShipmentState.QUARANTINED and ledger.get(row.id).purchase_attempted
    carrier.ship_behaviour = "ok"
    edited = make_order().model_copy(update={"modified_at": datetime(2026, 11, 20, tzinfo=UTC)})
    row, _ = ledger.register_order(PIPELINE, edited)
    service(ledger, carrier).check(row)
    outcome = service(ledger, carrier).create(ledger.get(row.id), shipper=SHIPPER)
    assert not outcome.reused and carrier.lookups == 1 and carrier.bought == ["SO-1"]


@pytest.mark.parametrize("behaviour", ["never_sent", "auth"])
def test_a_purchase_refused_before_it_was_sent_returns_to_address_ok(ledger, carrier, behaviour):
    carrier.ship_behaviour = behaviour
    row = checked_row(ledger, carrier)
    with pytest.raises((RetryableError, AuthenticationError)):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    assert ledger.get(row.id).state is ShipmentState.ADDRESS_OK and carrier.bought == []
    carrier.ship_behaviour = "ok"
    outcome = service(ledger, carrier).create(ledger.get(row.id), shipper=SHIPPER)
    assert not outcome.reused and carrier.bought == ["SO-1"] and carrier.lookups == 1  # looked first


def test_an_unexpected_error_after_the_purchase_leaves_the_order_uncertain(ledger, carrier):
    carrier.ship_behaviour, carrier.index_lag = "bug_after_buying", True
    row = checked_row(ledger, carrier)
    with pytest.raises(TypeError):
        service(ledger, carrier).create(row, shipper=SHIPPER)
    assert ledger.get(row.id).state is ShipmentState.LABEL_UNCERTAIN
    carrier.ship_behaviour = "ok"
    assert service(ledger, carrier).create(ledger.get(row.id), shipper=SHIPPER).uncertain
    assert carrier.bought == ["SO-1"]


def test_an_unreadable_erp_document_does_not_quarantine_an_open_purchase(ledger, carrier):
    row = uncertain_row(ledger, carrier, Clock())
    after = ledger.register_failure(PIPELINE, erp="test", erp_id=row.erp_id, order_number="SO-1",
                                    modified_at="2026-11-20T00:00:00+00:00", error="order SO-1: no street")
    assert after.state is ShipmentState.LABEL_UNCERTAIN and after.error == "order SO-1: no street"


def test_a_label_image_that_cannot_be_stored_does_not_lose_the_label(ledger, carrier):
    def broken_store(order, label):
        raise OSError("bucket unreachable")

    row = checked_row(ledger, carrier)
    outcome = service(ledger, carrier, store_label=broken_store).create(row, shipper=SHIPPER)
    row = ledger.get(row.id)
    assert not outcome.reused and row.state is ShipmentState.LABELLED and row.label_path is None
    assert "bucket unreachable" in str(ledger.audit_trail(row.id)[-1]["detail"]["label_storage_errors"])


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
