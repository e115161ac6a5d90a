"""``ShipmentService``: the exactly-once protocol as a plain class, with no Airflow import.

UPS Ship has no idempotency key, so "never a second label" is kept here, over the ledger and a
:class:`~ml_connector.carriers.protocol.Carrier`:

1. **check** an extracted order against the carrier's rules (service, references, address rules, weight) and
   the carrier's address validation; ``extracted`` -> ``address_ok``, or a :class:`RecordError` naming the
   record and field.
2. **create**: claim the row (conditional update: one worker at a time); a row already labelled returns its
   stored tracking numbers and calls nothing. Otherwise ``label_requested`` is committed *before* the purchase
   (and ``label_requested_at`` is kept for life), and tracking numbers, charges and label paths are stored in
   the same transaction that moves the row to ``labelled``. An order whose purchase was ever attempted is
   looked up by reference before any new purchase, and a label found is adopted.
3. **uncertain**: a purchase whose outcome is unknown (no answer, a timeout, a 5xx after sending: the carrier's
   :class:`AmbiguousRequestError`; or a row found in ``label_requested`` once its claim is ours again: the
   attempt crashed or was killed) moves the order to ``label_uncertain``. It is never bought again
   automatically: it is looked up by reference at once, then again with backoff in later calls (later tries
   and runs) until the settle window ends; a label found is adopted. After the window it stays uncertain and
   its ledger error says which command resolves it (:class:`ShipmentDecisions`: adopt a label found by hand,
   or buy anew, in which case a label of the abandoned attempt that turns up later is voided).
4. **write back**: the tracking number onto the ERP document (idempotent); ``labelled`` -> ``written_back``.

Operators, replay, reconciliation, webhook consumers and people's decisions all go through this module.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector.carriers.protocol import Carrier, LabelPlan
from ml_connector.erp.protocol import OrderSource
from ml_connector.errors import (
    AmbiguousRequestError,
    AuthenticationError,
    ConfigurationError,
    ConnectorError,
    InvalidAddress,
    PermanentError,
    RetryableError,
)
from ml_connector.ledger import Ledger, ShipmentRow, ShipmentState
from ml_connector.models import Address, AddressStatus, Label, Money, Order, ShipmentResult

#: Default settle window: how long an uncertain purchase is looked up by reference before a person is asked.
#: Far above the minutes a carrier's reference index can lag behind a purchase.
DEFAULT_SETTLE_WINDOW_SECONDS = 6 * 3600.0
#: Default wait before the second lookup of an uncertain purchase; it doubles after each lookup...
DEFAULT_LOOKUP_BACKOFF_SECONDS = 60.0
#: ...up to this.
MAX_LOOKUP_INTERVAL_SECONDS = 1800.0
#: The step name of a person's decision in the audit trail.
DECISION_STEP = "decision"

LabelStore = Callable[[Order, Label], str]
#: reads a label image back from the path :data:`LabelStore` returned (for ERPs that take the file)
LabelLoad = Callable[[str], bytes]


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
    :param uncertain: the order is ``label_uncertain``: a label may exist, none is recorded, nothing was bought
        again; ``message`` says what happens next and how a person resolves it.
    :param voided: labels of an abandoned attempt (after a rebuy) voided in this call.
    """

    order_number: str
    tracking_numbers: list[str] = field(default_factory=list)
    reused: bool = False
    adopted: bool = False
    uncertain: bool = False
    message: str | None = None
    voided: list[str] = field(default_factory=list)


@dataclass
class _Claim:
    """Whether this call still holds its claim on the row (a recorded label gives it back in the same
    transaction)."""

    held: bool = False


class ShipmentService:
    """Moves one pipeline's ledger rows through check -> label -> write-back, exactly once.

    :param ledger: the ledger (the only shared state).
    :param carrier: the carrier that validates addresses and buys labels.
    :param actor: who acts, for claims and the audit trail (an Airflow task instance, a CLI user...).
    :param claim_ttl_seconds: how long a claim holds before another worker may take it over.
    :param store_label: writes a label image somewhere durable and returns its path (labels never go into
        the ledger or XCom); ``None`` keeps no image.
    :param settle_window_seconds: how long an uncertain purchase is looked up by reference (from the moment it
        became uncertain) before it is left to a person; also how long the abandoned label of a rebuy is
        watched for.
    :param lookup_backoff_seconds: the wait before the second lookup; it doubles after each lookup, up to
        :data:`MAX_LOOKUP_INTERVAL_SECONDS`, and the last lookup falls on the end of the window.
    :param clock: epoch seconds (tests move it).
    :param load_label: reads a stored label image back, so that :meth:`write_back` can attach it to the ERP
        document (:meth:`OrderSource.attach_label`); ``None`` attaches nothing.
    """

    def __init__(self, ledger: Ledger, carrier: Carrier, *, actor: str, claim_ttl_seconds: float = 900,
                 store_label: LabelStore | None = None, load_label: LabelLoad | None = None,
                 settle_window_seconds: float = DEFAULT_SETTLE_WINDOW_SECONDS,
                 lookup_backoff_seconds: float = DEFAULT_LOOKUP_BACKOFF_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.carrier = carrier
        self.actor = actor
        self.claim_ttl_seconds = claim_ttl_seconds
        self.store_label = store_label
        self.load_label = load_label
        self.settle_window_seconds = settle_window_seconds
        self.lookup_backoff_seconds = lookup_backoff_seconds
        self.clock = clock

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
        # not durable: lost on a power cut, the address is checked again
        self.ledger.transition(row.id, ShipmentState.ADDRESS_OK, step="validate_address", message=message,
                               residential=residential, service_code=plan.service_code, actor=self.actor,
                               durable=False)
        return CheckOutcome(order.number, plan.service_code, residential, message)

    # -- 2. create -----------------------------------------------------------------------------------------

    def create(self, row: ShipmentRow, *, shipper: Address | Callable[[], Address]) -> LabelOutcome:
        """Make sure the order has exactly one label: reuse, adopt, or buy; or leave it uncertain.

        An uncertain order (see the module docstring) comes back as ``LabelOutcome(uncertain=True)``, with no
        exception: nothing was bought again, and its lookup by reference ran if it was due.

        A labelled order whose watch after a rebuy is due is looked up, and labels of the abandoned attempt are
        voided (``LabelOutcome.voided``).

        :param shipper: the shipper address (or a callable giving it, called only when a label is bought).
        :raises NothingToDo: the order is not ready for a label.
        :raises RetryableError: another worker holds the claim, or a transient error before anything was bought
            (retry later).
        :raises RecordError: the carrier refused the order's data (no label exists; quarantine it).
        :raises ConfigurationError: a setting or the connection is wrong, or (``AuthenticationError``) the
            credentials were refused: nothing was bought; the row is back in ``address_ok``, or keeps
            ``label_uncertain`` when it was a lookup that failed so.
        """
        now = self.clock()
        if row.is_labelled and not row.lookup_due(now):
            return _outcome(row, reused=True)
        if not row.is_labelled and row.state not in (ShipmentState.ADDRESS_OK, ShipmentState.LABEL_REQUESTED,
                                                     ShipmentState.LABEL_UNCERTAIN):
            raise NothingToDo(f"not ready for a label ({row.state.value})")
        if row.is_uncertain and not row.lookup_due(now):
            return self._still_uncertain(row)
        plan = None
        if (row.state is ShipmentState.ADDRESS_OK and not row.purchase_attempted and row.order_json is not None
                and not callable(shipper)):
            # the common case, a first purchase: claim and label_requested in one transaction
            plan = self.carrier.plan(row.order)
        claim = _Claim()
        try:
            if plan is not None:
                won, current, requested = self.ledger.claim_to_buy(
                    row.id, self.actor, ttl_seconds=self.claim_ttl_seconds, order_json=row.order_json,
                    step="create_shipment", actor=self.actor,
                    message=f"buying a {self.carrier.name} label ({plan.service_name})",
                    service_code=plan.service_code, reference=plan.reference)
            else:
                won = self.ledger.claim(row.id, self.actor, ttl_seconds=self.claim_ttl_seconds)
                current, requested = None, False
            if not won:
                raise RetryableError(f"order {row.order_number}: another worker is creating this shipment")
            claim.held = True
            if requested:
                return self._buy(current, current.order, plan, shipper, claim)
            # the state may have moved before we got the claim
            return self._create(current if current is not None else self.ledger.get(row.id), shipper, claim)
        finally:
            if claim.held:
                self.ledger.release(row.id, self.actor)

    def _create(self, row: ShipmentRow, shipper: Address | Callable[[], Address],
                claim: _Claim | None = None) -> LabelOutcome:
        now = self.clock()
        if row.is_labelled:
            return self._watch(row) if row.lookup_due(now) else _outcome(row, reused=True)
        if row.state is ShipmentState.LABEL_REQUESTED:
            # the claim is ours, so the attempt that left the row here is over without a recorded outcome: it
            # crashed, was killed, or its claim expired. A label may exist.
            row = self._mark_uncertain(row, f"an earlier {self.carrier.name} purchase attempt was interrupted "
                                            "before its outcome was recorded (crash, kill or claim expiry)")
            return self._look_up(row)
        if row.state is ShipmentState.LABEL_UNCERTAIN:
            return self._look_up(row) if row.lookup_due(now) else self._still_uncertain(row)
        if row.state is not ShipmentState.ADDRESS_OK:
            raise NothingToDo(f"not ready for a label ({row.state.value})")
        order = row.order
        plan = self.carrier.plan(order)
        if row.purchase_attempted:
            # a purchase was attempted before (its outcome was settled, or a person decided to buy anew): look
            # first; errors here leave the row as it is, nothing bought
            found = self.carrier.find_labels(plan)
            if found is not None:
                row = self.ledger.record_label(
                    row.id, found, label_paths={}, actor=self.actor, adopted=True,
                    message=f"a purchase was attempted before; adopted the label found by reference "
                            f"{plan.reference}: {', '.join(found.tracking_numbers)} (nothing bought)")
                return _outcome(row, reused=True, adopted=True)
        address = shipper() if callable(shipper) else shipper  # before label_requested: it may fail
        row = self.ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment",
                                     actor=self.actor,
                                     message=f"buying a {self.carrier.name} label ({plan.service_name})",
                                     service_code=plan.service_code, reference=plan.reference)
        return self._buy(row, order, plan, address, claim)

    def _buy(self, row: ShipmentRow, order: Order, plan: LabelPlan, address: Address,
             claim: _Claim | None) -> LabelOutcome:
        """Buy the label of a row in ``label_requested`` (committed) whose claim we hold; record it (and give
        the claim back) in one transaction."""
        try:
            result = self.carrier.buy_label(order, plan, shipper=address, residential=row.residential)
        except AmbiguousRequestError as exc:
            row = self._mark_uncertain(row, f"the {self.carrier.name} purchase got no clear answer ({exc})")
            return self._look_up(row)
        except (ConfigurationError, AuthenticationError) as exc:
            self._nothing_bought(row, exc)  # refused before processing: the configuration, not the order
            raise
        except PermanentError:
            raise  # refused: no label exists; the caller quarantines the order with the carrier's reason
        except RetryableError as exc:
            if (getattr(exc, "status", None) or 0) >= 500:
                # a 5xx after sending: the carrier may have bought the label before failing
                row = self._mark_uncertain(row, f"the {self.carrier.name} purchase failed after it was sent "
                                                f"({exc})")
                return self._look_up(row)
            self._nothing_bought(row, exc)  # 429, or never sent: nothing was bought
            raise
        except Exception as exc:
            # anything else (a bug, an answer we cannot read): the label may exist
            self._mark_uncertain(row, f"the {self.carrier.name} purchase ended with an unexpected error "
                                      f"({type(exc).__name__}: {exc})")
            raise
        paths, detail = {}, {}
        if self.store_label is not None:
            for label in result.labels:
                try:
                    paths[label.tracking_number] = self.store_label(order, label)
                except Exception as exc:  # the label is bought: record it whatever happens to its image
                    detail.setdefault("label_storage_errors", []).append(f"{label.tracking_number}: {exc}")
        watch: dict[str, Any] = {}
        if row.rebuy_at is not None:
            # bought after a person's rebuy: watch for the abandoned attempt's label and void it if it turns up
            now = self.clock()
            watch = dict(next_lookup_at=now + self._backoff(1), lookup_until=now + self.settle_window_seconds)
        row = self.ledger.record_label(row.id, result, label_paths=paths, actor=self.actor, detail=detail,
                                       release_claim=self.actor if claim is not None else None, **watch)
        if claim is not None:
            claim.held = False
        return _outcome(row, reused=False)

    def _nothing_bought(self, row: ShipmentRow, exc: BaseException) -> None:
        status = getattr(exc, "status", None)
        why = "rate limit (429)" if status == 429 else str(exc)
        self.ledger.transition(row.id, ShipmentState.ADDRESS_OK, step="create_shipment", actor=self.actor,
                               expect=[ShipmentState.LABEL_REQUESTED],
                               message=f"{self.carrier.name} {why}; no label bought, will retry")

    # -- uncertain purchases ------------------------------------------------------------------------------

    def _mark_uncertain(self, row: ShipmentRow, what: str) -> ShipmentRow:
        now = self.clock()
        until = now + self.settle_window_seconds
        reason = (f"order {row.order_number}: {what}; a label may exist. It is not bought again: it is looked up "
                  f"by reference {self._reference(row)} until {_when(until)} (settle window "
                  f"{_hours(self.settle_window_seconds)}) and adopted when found")
        return self.ledger.mark_uncertain(row.id, step="create_shipment", reason=reason, now=now,
                                          next_lookup_at=now, lookup_until=until, actor=self.actor,
                                          detail={"cause": what})

    def _reference(self, row: ShipmentRow) -> str:
        return self._lookup_plan(row).reference

    def _lookup_plan(self, row: ShipmentRow) -> LabelPlan:
        """The plan a lookup needs: the reference the purchase was asked with (as recorded), not a new plan
        (settings may have changed since)."""
        if row.reference:
            return LabelPlan(service_code=row.service_code or "", service_name="", references=[row.reference])
        return self.carrier.plan(row.order)

    def _find(self, row: ShipmentRow) -> tuple[ShipmentResult | None, ConnectorError | None]:
        try:
            return self.carrier.find_labels(self._lookup_plan(row)), None
        except (ConfigurationError, AuthenticationError):
            raise  # the task fails; the row keeps its state and its lookup stays due
        except ConnectorError as exc:  # transient or not: a failed lookup, retried on the backoff
            return None, exc

    def _cause(self, row: ShipmentRow) -> str:
        """Why the row is uncertain, as recorded when it became so."""
        for entry in reversed(self.ledger.audit_trail(row.id)):
            if entry["outcome"] == "uncertain":
                return (entry.get("detail") or {}).get("cause") or "the purchase's outcome is unknown"
        return "the purchase's outcome is unknown"

    def _look_up(self, row: ShipmentRow) -> LabelOutcome:
        """One lookup by reference for a ``label_uncertain`` row whose claim we hold."""
        reference = self._reference(row)
        found, failure = self._find(row)
        if found is not None:
            row = self.ledger.record_label(
                row.id, found, label_paths={}, actor=self.actor, adopted=True,
                message=f"adopted the label found by reference {reference} after an uncertain purchase: "
                        f"{', '.join(found.tracking_numbers)} (nothing bought again)")
            return _outcome(row, reused=True, adopted=True)
        now = self.clock()
        attempts = row.lookup_attempts + 1
        since = row.uncertain_since if row.uncertain_since is not None else now
        until = row.lookup_until if row.lookup_until is not None else since + self.settle_window_seconds
        looked = (f"lookup {attempts} by reference {reference} failed ({failure})" if failure
                  else f"no label found by reference {reference} (lookup {attempts})")
        status = f"order {row.order_number} is label_uncertain since {_when(since)}: {self._cause(row)}"
        if now >= until:
            message = (f"{status}; a label may exist: {looked}, and the settle window ({_hours(until - since)}) is over: nothing is "
                       f"bought automatically and no more lookups run, a person decides. Look for the label with "
                       f"{self.carrier.name} (reference {reference}). {decision_hint(row)}")
            row = self.ledger.record_lookup(row.id, step="create_shipment", outcome="needs_decision",
                                            message=message, next_lookup_at=None, error=message,
                                            actor=self.actor)
            return _uncertain(row)
        next_at = min(now + self._backoff(attempts), until)
        message = (f"{status}; a label may exist and is not bought again automatically: {looked}, next lookup "
                   f"after {_when(next_at)}, until {_when(until)}. {decision_hint(row)}")
        row = self.ledger.record_lookup(row.id, step="create_shipment",
                                        outcome="lookup_failed" if failure else "not_found", message=message,
                                        next_lookup_at=next_at, error=message, actor=self.actor)
        return _uncertain(row)

    def _still_uncertain(self, row: ShipmentRow) -> LabelOutcome:
        return _uncertain(row)

    def _backoff(self, attempts: int) -> float:
        return min(self.lookup_backoff_seconds * 2 ** max(0, attempts - 1), MAX_LOOKUP_INTERVAL_SECONDS)

    def _watch(self, row: ShipmentRow) -> LabelOutcome:
        """After a rebuy: look for the abandoned attempt's label; void any label under the reference that is
        not this row's, and record the void."""
        found, failure = self._find(row)
        stale = [n for n in (found.tracking_numbers if found else []) if n not in row.tracking_numbers]
        voided, problems = [], []
        for number in stale:
            try:
                ok, why = self.carrier.void(number, [number]), None
            except ConnectorError as exc:
                ok, why = False, exc
            if ok:
                voided.append(number)
                self.ledger.audit(row, step="void_abandoned_label", outcome="voided", actor=self.actor,
                                  message=f"label {number} of the attempt abandoned by the rebuy decision turned "
                                          f"up under reference {row.reference}; voided with {self.carrier.name}",
                                  detail={"tracking_number": number, "kept": list(row.tracking_numbers)})
            else:
                problems.append(f"{number}: {why or 'the carrier did not confirm the void'}")
                self.ledger.audit(row, step="void_abandoned_label", outcome="void_failed", actor=self.actor,
                                  message=f"could not void label {number} of the abandoned attempt: "
                                          f"{why or 'the carrier did not confirm the void'}; void it by hand",
                                  detail={"tracking_number": number})
        now = self.clock()
        attempts = row.lookup_attempts + 1
        until = row.lookup_until or now
        error = None
        if problems:
            error = (f"order {row.order_number}: label(s) of the attempt abandoned by a rebuy could not be voided "
                     f"({'; '.join(problems)}); void them with {self.carrier.name} by hand")
        if now >= until:
            row = self.ledger.record_lookup(row.id, step="void_abandoned_label", outcome="watch_ended",
                                            message="the watch for the label of the abandoned attempt is over",
                                            next_lookup_at=None, error=error, actor=self.actor)
        else:
            looked = f"lookup failed ({failure})" if failure else (
                f"voided {', '.join(voided)}" if voided else "no label of the abandoned attempt")
            row = self.ledger.record_lookup(row.id, step="void_abandoned_label", outcome="watched",
                                            message=f"watch for the abandoned label: {looked}",
                                            next_lookup_at=min(now + self._backoff(attempts), until), error=error,
                                            actor=self.actor)
        return LabelOutcome(row.order_number, list(row.tracking_numbers), reused=True, voided=voided)

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
        self._attach_labels(row, source)
        charges = _money(row.charges)
        if charges is not None:
            source.write_charges(row.order, charges)
        self.ledger.transition(row.id, ShipmentState.WRITTEN_BACK, step="writeback", actor=self.actor,
                               message=f"{', '.join(row.tracking_numbers)} written to {row.erp} {row.order_number}",
                               error=None, error_step=None, durable=False)
        return row.tracking_numbers

    def _attach_labels(self, row: ShipmentRow, source: OrderSource) -> None:
        """Attach each stored label file to the ERP document (idempotent on the ERP's side: same file name)."""
        if self.load_label is None:
            return
        order = row.order
        for tracking_number, path in self.ledger.package_labels(row.id):
            if not path:
                continue  # an adopted label has no stored image
            filename = re.split(r"[/\\]", path)[-1]
            image_format = filename.rpartition(".")[2].upper() or "GIF"
            label = Label(tracking_number=tracking_number, image_format=image_format, image=self.load_label(path))
            if not source.attach_label(order, label, filename):
                return  # this ERP (or its settings) takes no attachments


def _money(text: str | None) -> Money | None:
    """The ledger's ``charges`` column (``"12.34 USD"``) as Money; None when empty or unreadable."""
    amount, _, currency = (text or "").partition(" ")
    try:
        return Money(amount=Decimal(amount), currency=currency.strip()) if amount and currency.strip() else None
    except (InvalidOperation, ValueError):
        return None


class DecisionRefused(PermanentError):
    """A person's decision cannot be applied to the order as it is (the message says why and what to do)."""


@dataclass(frozen=True)
class Decision:
    """What :class:`ShipmentDecisions` did.

    :param changed: ``False`` when the order already was as decided (a repeated decision changes nothing).
    """

    action: str
    pipeline: str
    order_number: str
    state: ShipmentState
    message: str
    changed: bool = True


#: Tracking numbers a person types: letters and digits (separated by commas or blanks).
_TRACKING_NUMBER = re.compile(r"^[A-Z0-9]{6,40}$")


class ShipmentDecisions:
    """A person's decisions on one order, each recorded with who and why (audit step ``decision``).

    The ``ml-connector shipments`` commands and the ``ml_connector_resolve`` DAG both call this class; none of
    them calls a carrier. Each decision takes the order's claim for a moment, so it never races a worker that is
    buying or looking up; a repeated decision changes nothing.

    - :meth:`adopt`: record a label found by hand (the order goes ``labelled``; the next run writes it back).
    - :meth:`rebuy`: buy anew on the next run. That run still looks the order up by reference first (a label
      found then is adopted); a label bought after the rebuy is watched for the settle window, and a label of
      the abandoned attempt that turns up in a lookup is voided through the carrier, the void recorded.
    - :meth:`retry`: release a quarantined order after its data was fixed (it is extracted again; a purchase
      attempted before is still looked up first).

    :param ledger: the ledger.
    :param by: who decides (a person's name or login); the audit rows' actor.
    :param via: where the decision came from (``cli``, ``airflow <dag run>``), for the audit detail.
    """

    ACTIONS = ("adopt", "rebuy", "retry")

    def __init__(self, ledger: Ledger, *, by: str, via: str, claim_ttl_seconds: float = 120,
                 clock: Callable[[], float] = time.time) -> None:
        if not by or not by.strip():
            raise DecisionRefused("a decision needs to say who made it")
        self.ledger = ledger
        self.by = by.strip()
        self.via = via
        self.claim_ttl_seconds = claim_ttl_seconds
        self.clock = clock

    def decide(self, action: str, pipeline: str, order_number: str, *,
               tracking_numbers: Iterable[str] | str = (), reason: str | None = None) -> Decision:
        """Apply ``action`` (one of :attr:`ACTIONS`)."""
        if action == "adopt":
            return self.adopt(pipeline, order_number, tracking_numbers, reason=reason)
        if action == "rebuy":
            return self.rebuy(pipeline, order_number, reason=reason or "")
        if action == "retry":
            return self.retry(pipeline, order_number, reason=reason)
        raise DecisionRefused(f"unknown action {action!r}: one of {', '.join(self.ACTIONS)}")

    def adopt(self, pipeline: str, order_number: str, tracking_numbers: Iterable[str] | str, *,
              reason: str | None = None) -> Decision:
        """Record the label(s) a person found for the order; nothing is bought.

        :param tracking_numbers: the label's tracking number(s), the shipment's lead package first.
        :raises DecisionRefused: no such order, no or malformed numbers, a number recorded on another order,
            or the order is labelled with other numbers already.
        """
        numbers = parse_tracking_numbers(tracking_numbers)
        reason = (reason or "").strip() or "found by hand"
        with self._claimed(pipeline, order_number) as row:
            if row.is_labelled:
                if set(numbers) == set(row.tracking_numbers):
                    return self._unchanged("adopt", row, f"already labelled with {', '.join(numbers)}")
                raise DecisionRefused(f"order {order_number} in {pipeline} is already {row.state.value} with "
                                      f"{', '.join(row.tracking_numbers)}; nothing to adopt")
            if row.state is ShipmentState.VOIDED:
                raise DecisionRefused(f"order {order_number} in {pipeline} is voided")
            if row.order_json is None:
                raise DecisionRefused(f"order {order_number} in {pipeline} could not be read from the ERP "
                                      f"({row.error}); fix it there first, so that the label can be written back")
            for number in numbers:
                owner = self.ledger.package_owner(number)
                if owner is not None and owner.id != row.id:
                    raise DecisionRefused(f"{number} is recorded for order {owner.order_number} ({owner.pipeline})"
                                          f"; check the number")
            message = (f"{self.by} recorded the label {', '.join(numbers)} found by hand ({reason}); "
                       f"was {row.state.value}, nothing bought")
            result = ShipmentResult(shipment_id=numbers[0], tracking_numbers=numbers,
                                    warnings=["recorded by hand: fetch the label image from the carrier if "
                                              "it is needed"])
            row = self.ledger.record_label(row.id, result, label_paths={}, actor=self.by, adopted=True,
                                           step=DECISION_STEP, outcome="adopt", message=message,
                                           detail=self._detail("adopt", reason))
            return Decision("adopt", pipeline, order_number, row.state, message)

    def rebuy(self, pipeline: str, order_number: str, *, reason: str) -> Decision:
        """Let the next run buy a new label for an uncertain order (see the class docstring).

        :param reason: why (required: it is what the audit trail keeps).
        :raises DecisionRefused: no reason, no such order, or the order is not uncertain.
        """
        reason = (reason or "").strip()
        if not reason:
            raise DecisionRefused("rebuy needs a reason (--reason): the audit trail keeps why a label was "
                                  "bought anew")
        with self._claimed(pipeline, order_number) as row:
            if row.state is ShipmentState.ADDRESS_OK and row.rebuy_at is not None:
                return self._unchanged("rebuy", row, "a rebuy is already decided; the next run buys")
            if row.state not in (ShipmentState.LABEL_UNCERTAIN, ShipmentState.LABEL_REQUESTED):
                raise DecisionRefused(f"order {order_number} in {pipeline} is {row.state.value}, not uncertain: "
                                      "rebuy is for an order whose purchase has an unknown outcome")
            message = (f"{self.by} decided to buy anew ({reason}). The next run looks the order up by reference "
                       "once more and adopts a label found; otherwise it buys one, and a label of the abandoned "
                       "attempt that turns up later is voided")
            row = self.ledger.transition(
                row.id, ShipmentState.ADDRESS_OK, step=DECISION_STEP, outcome="rebuy", actor=self.by,
                message=message, detail=self._detail("rebuy", reason),
                expect=[ShipmentState.LABEL_UNCERTAIN, ShipmentState.LABEL_REQUESTED], rebuy_at=self.clock(),
                uncertain_since=None, lookup_attempts=0, next_lookup_at=None, lookup_until=None, error=None,
                error_step=None)
            return Decision("rebuy", pipeline, order_number, row.state, message)

    def retry(self, pipeline: str, order_number: str, *, reason: str | None = None) -> Decision:
        """Release a quarantined order (its data was fixed): it is extracted again and the next run takes it.

        :raises DecisionRefused: no such order, the order is not quarantined, or its ERP document was never
            read (fix it in the ERP: the next run that sees it changed re-reads it).
        """
        reason = (reason or "").strip() or "data fixed"
        with self._claimed(pipeline, order_number) as row:
            if row.state is ShipmentState.EXTRACTED:
                return self._unchanged("retry", row, "not quarantined: the next run takes it")
            if row.state is not ShipmentState.QUARANTINED:
                hint = " (use adopt or rebuy)" if row.state in (ShipmentState.LABEL_UNCERTAIN,
                                                                ShipmentState.LABEL_REQUESTED) else ""
                raise DecisionRefused(f"order {order_number} in {pipeline} is {row.state.value}, not "
                                      f"quarantined{hint}")
            if row.order_json is None:
                raise DecisionRefused(f"order {order_number} in {pipeline} could not be read from the ERP "
                                      f"({row.error}); fix it there: the next run that sees it changed reads it")
            looked = (" A purchase was attempted before: the next one looks the order up by reference first."
                      if row.purchase_attempted else "")
            message = f"{self.by} released the quarantine ({reason}); the next run takes it again.{looked}"
            row = self.ledger.transition(row.id, ShipmentState.EXTRACTED, step=DECISION_STEP, outcome="retry",
                                         actor=self.by, message=message, detail=self._detail("retry", reason),
                                         expect=[ShipmentState.QUARANTINED], error=None, error_step=None)
            return Decision("retry", pipeline, order_number, row.state, message)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _row(self, pipeline: str, order_number: str) -> ShipmentRow:
        row = self.ledger.find_by_number(pipeline, order_number)
        if row is None:
            raise DecisionRefused(f"no order {order_number} in pipeline {pipeline} ({self.ledger})")
        return row

    @contextmanager
    def _claimed(self, pipeline: str, order_number: str) -> Iterator[ShipmentRow]:
        row = self._row(pipeline, order_number)
        owner = f"decision by {self.by}"
        with self.ledger.claimed(row.id, owner, ttl_seconds=self.claim_ttl_seconds) as won:
            if not won:
                current = self.ledger.get(row.id)
                raise RetryableError(f"order {order_number} is being worked on right now ({current.claimed_by}); "
                                     "try again in a minute")
            yield self.ledger.get(row.id)

    def _unchanged(self, action: str, row: ShipmentRow, why: str) -> Decision:
        return Decision(action, row.pipeline, row.order_number, row.state, f"nothing to do: {why}", changed=False)

    def _detail(self, action: str, reason: str) -> dict[str, Any]:
        return {"decision": action, "by": self.by, "via": self.via, "reason": reason}


def parse_tracking_numbers(value: Iterable[str] | str) -> list[str]:
    """Tracking numbers as a person types them (a list, or one string separated by commas or blanks),
    upper-cased, without duplicates. :raises DecisionRefused: none given, or one is not 6-40 letters/digits."""
    parts: Sequence[str] = [value] if isinstance(value, str) else list(value)
    numbers: list[str] = []
    for part in parts:
        for token in re.split(r"[\s,;]+", part or ""):
            token = token.strip().upper()
            if token and token not in numbers:
                numbers.append(token)
    if not numbers:
        raise DecisionRefused("adopt needs the label's tracking number(s)")
    bad = [n for n in numbers if not _TRACKING_NUMBER.match(n)]
    if bad:
        raise DecisionRefused(f"not a tracking number: {', '.join(bad)} (6 to 40 letters and digits)")
    return numbers


def _outcome(row: ShipmentRow, *, reused: bool, adopted: bool = False) -> LabelOutcome:
    return LabelOutcome(row.order_number, list(row.tracking_numbers), reused=reused, adopted=adopted)


def _uncertain(row: ShipmentRow) -> LabelOutcome:
    return LabelOutcome(row.order_number, uncertain=True, message=row.error)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} h" if hours >= 1 else f"{seconds / 60:g} min"


def decision_hint(row: ShipmentRow) -> str:
    """How a person resolves an uncertain order: the commands (and the DAG) that record a decision."""
    return (f"To decide: if the label exists, `ml-connector shipments adopt {row.pipeline} {row.order_number} "
            f"TRACKING_NUMBER...`; if it does not, `ml-connector shipments rebuy {row.pipeline} "
            f"{row.order_number} --reason '...'` (or trigger the ml_connector_resolve DAG).")


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


def _money(stored: str | None) -> Money | None:
    """The ledger's ``charges`` column (``"12.34 USD"``) as :class:`Money`; None when absent or unreadable."""
    amount, _, currency = (stored or "").strip().partition(" ")
    try:
        return Money(amount=Decimal(amount), currency=currency.strip()) if amount and currency.strip() else None
    except (InvalidOperation, ValueError):
        return None
