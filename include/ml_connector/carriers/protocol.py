"""The carrier side of a pipeline: :class:`Carrier`, what every carrier package implements.

A carrier package (``ml_connector/carriers/<name>/``) holds its hook (the only I/O to that carrier), pure
request/response mapping modules, its code tables and rules, and ``carrier.py`` with a :class:`Carrier`.
Every rule of that carrier (address rules, reference length and placement, account number, packaging and
service codes) lives there once; nothing outside the package knows them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ml_connector.models import Address, AddressValidation, Order, ShipmentResult, TrackingResult


@dataclass(frozen=True)
class SubscriptionOutcome:
    """What a push-tracking subscription request did, per number.

    :param accepted: subscribed (events will be pushed until the carrier's lifetime has passed).
    :param invalid: refused by the carrier as numbers it cannot subscribe (never retried).
    :param failed: number -> why the request failed (network, 5xx, account): retried, or handed to the
        carrier's pull fallback (Quantum View for UPS).
    """

    accepted: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelPlan:
    """What the carrier will be asked for one order, settled before any label is bought.

    :param service_code: the carrier's service code (UPS ``03``).
    :param service_name: its name, for people ("Ground").
    :param references: the values printed on the label; the first is what an unanswered purchase is looked
        up by (:meth:`Carrier.find_labels`).
    """

    service_code: str
    service_name: str
    references: list[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.references[0]


class Carrier(abc.ABC):
    """Buys labels, finds them again, voids and tracks them.

    Errors are typed (:mod:`ml_connector.errors`): :class:`~ml_connector.errors.RecordError` when the order's
    data cannot be shipped (quarantine it), :class:`~ml_connector.errors.ConfigurationError` /
    :class:`~ml_connector.errors.AuthenticationError` for the account or settings (fail the task, quarantine
    nothing), :class:`~ml_connector.errors.RetryableError` for transient failures, and
    :class:`~ml_connector.errors.AmbiguousRequestError` when a purchase may or may not have happened.
    """

    #: registry name of the carrier (``ups``)
    name: str

    @abc.abstractmethod
    def plan(self, order: Order) -> LabelPlan:
        """Check the order against the carrier's rules and settle service and references. Pure: no I/O.

        :raises RecordError: unknown ship method, a reference too long, an address the carrier cannot serve,
            no package weight (the message names the record and the field).
        """

    @abc.abstractmethod
    def validate_address(self, address: Address) -> AddressValidation | None:
        """Street-level validation and residential/commercial classification (idempotent, read-only).
        ``None`` when the carrier offers none for that country."""

    @abc.abstractmethod
    def buy_label(self, order: Order, plan: LabelPlan, *, shipper: Address,
                  residential: bool | None) -> ShipmentResult:
        """Buy the label(s) for one order: NOT idempotent. Call it only through
        :class:`~ml_connector.service.ShipmentService`, which claims the order and records ``label_requested``
        first.

        :raises AmbiguousRequestError: sent, but no clear answer came back: the label may exist.
        :raises RecordError: the carrier refused the order's data (no label exists).
        """

    @abc.abstractmethod
    def find_labels(self, plan: LabelPlan) -> ShipmentResult | None:
        """Labels an earlier attempt bought for this plan's reference (read-only), or ``None``.

        A carrier's reference index can lag behind a purchase: ``None`` means "not found yet", not "never
        bought"."""

    @abc.abstractmethod
    def void(self, shipment_id: str, tracking_numbers: Iterable[str] = ()) -> bool:
        """Void a shipment or some of its packages; ``True`` when the carrier confirms it (idempotent)."""

    @abc.abstractmethod
    def track(self, tracking_number: str) -> TrackingResult:
        """Current status and scans of one package (read-only)."""

    # -- push and pull tracking (optional; the defaults offer neither) -----------------------------------

    #: the webhook inbox ``source`` its pushed events are stored under (None: the carrier pushes nothing)
    push_source: str | None = None
    #: how long one push subscription lasts, in seconds (None: until unsubscribed)
    push_lifetime_seconds: float | None = None

    def prepare_push(self, style: str, store: Any, *, previous_valid_until: float) -> bool:
        """Store in the ledger's secret ``store`` what the webhook route checks calls against (before any
        subscription is made with it). Returns True when the credential changed: every open subscription must
        be renewed with the new one."""
        return False

    def subscribe_tracking(self, tracking_numbers: Iterable[str], *, style: str, url: str | None = None,
                           kind: str = "standard") -> SubscriptionOutcome:
        """Subscribe packages to pushed tracking events, in the carrier's batch size; one bad number or one
        failed batch never sinks the others."""
        return SubscriptionOutcome(failed={n: "this carrier has no push tracking" for n in tracking_numbers})

    def read_pushed(self, payload: str) -> TrackingResult:
        """One stored webhook body (from the inbox) as the package's status at that event.

        :raises RecordError: the body is not a valid event."""
        raise NotImplementedError(f"{type(self).__name__} receives no pushed tracking events")

    def pull_tracking(self, subscription: str) -> list[TrackingResult]:
        """Unread events of a pull subscription (UPS Quantum View), one result per event."""
        return []

    def subscribe(self, tracking_numbers: Iterable[str]) -> list[str]:
        """Subscribe packages to pushed tracking events; returns the numbers accepted (idempotent).
        Carriers without push tracking keep this default, which subscribes nothing."""
        return []

    def unsubscribe(self, tracking_numbers: Iterable[str]) -> list[str]:
        """Stop pushed tracking events for these packages; returns the numbers released (idempotent)."""
        return []
