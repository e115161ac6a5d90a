"""UPS as a :class:`~ml_connector.carriers.protocol.Carrier`: the rules in :mod:`.rules` and :mod:`.codes`, the
I/O in :class:`~ml_connector.carriers.ups.hook.UpsHook`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from ml_connector.carriers.protocol import Carrier, LabelPlan, SubscriptionOutcome
from ml_connector.carriers.ups import rules, track_alert
from ml_connector.carriers.ups.codes import SERVICE_CODES, build_ship_method_map, resolve_service
from ml_connector.carriers.ups.tracking import parse_track_alert_result
from ml_connector.errors import (
    AmbiguousRequestError,
    ApiError,
    AuthenticationError,
    ConfigurationError,
    ConnectorError,
    MissingWeight,
    RecordError,
)
from ml_connector.models import (
    Address,
    AddressValidation,
    Order,
    ShipmentResult,
    TrackingResult,
    TrackingStatus,
)

if TYPE_CHECKING:  # pragma: no cover
    from ml_connector.carriers.ups.hook import UpsHook
    from ml_connector.settings import PipelineSettings

#: how far back a lookup by reference searches (UPS keeps tracking data about 120 days)
REFERENCE_LOOKUP_DAYS = 14


class UpsCarrier(Carrier):
    """UPS Ship, Address Validation, Track and Void behind the carrier protocol.

    :param hook: the UPS hook (token, HTTP); built lazily from ``ups_conn_id`` when not given.
    :param ship_method_map: ERP ship method -> UPS service code, on top of the built-in map.
    :param reference_fields: what is printed in the label's reference numbers (``number``,
        ``customer_reference``), the first one being what lookups by reference use.
    :param negotiated_rates: ask for the account's negotiated rates.
    :param ups_conn_id: the Airflow connection id when ``hook`` is not given.
    :param origin_country: where parcels leave from (the pipeline's ``ship_from`` country) when known before
        the purchase: then :meth:`plan` already refuses goods leaving the customs area whose lines lack what
        the commercial invoice needs. Unknown, the same check runs when the label is bought.
    :param reason_for_export: the commercial invoice's ReasonForExport (``SALE``...).
    :param default_origin_country: country of origin for invoice lines whose ERP record has none.
    :param item_origin_countries: item code -> country of origin, tried first.
    """

    name = "ups"

    def __init__(self, hook: UpsHook | None = None, *, ship_method_map: Mapping[str, str] | None = None,
                 reference_fields: Sequence[str] = ("number", "customer_reference"),
                 negotiated_rates: bool = True, ups_conn_id: str = "ups_default", ledger: Any = None,
                 origin_country: str | None = None, reason_for_export: str = "SALE",
                 default_origin_country: str | None = None,
                 item_origin_countries: Mapping[str, str] | None = None) -> None:
        self._hook = hook
        self.ups_conn_id = ups_conn_id
        self.ledger = ledger
        self.ship_method_map = build_ship_method_map(ship_method_map)
        self.reference_fields = list(reference_fields)
        self.negotiated_rates = negotiated_rates
        self.origin_country = origin_country
        self.reason_for_export = rules.check_reason_for_export(reason_for_export)
        self.default_origin_country = default_origin_country
        self.item_origin_countries = dict(item_origin_countries or {})

    @classmethod
    def from_settings(cls, settings: PipelineSettings, *, ledger: Any = None,
                      hook: UpsHook | None = None) -> UpsCarrier:
        """The carrier of one pipeline (its ``ship_method_map``, ``reference_fields``, ``negotiated_rates``)."""
        return cls(hook, ship_method_map=settings.ship_method_map, reference_fields=settings.reference_fields,
                   negotiated_rates=settings.negotiated_rates, ups_conn_id=settings.carrier_connection_id,
                   ledger=ledger, origin_country=settings.ship_from.country if settings.ship_from else None,
                   reason_for_export=getattr(settings, "reason_for_export", "SALE"),
                   default_origin_country=getattr(settings, "default_origin_country", None),
                   item_origin_countries=getattr(settings, "item_origin_countries", None))

    def _customs_ready(self, order: Order) -> Order:
        """The order with the configured countries of origin on lines that have none."""
        return rules.with_origin_countries(order, self.item_origin_countries, self.default_origin_country)

    @staticmethod
    def check_ship_method_map(value: Mapping[str, str]) -> dict[str, str]:
        """Validate a ``ship_method_map`` setting (a typo is one configuration error, not a quarantine per
        order). :raises ConfigurationError: a value is not a UPS service code."""
        build_ship_method_map(value)
        return dict(value)

    @property
    def hook(self) -> UpsHook:
        if self._hook is None:
            from ml_connector.carriers.ups.hook import UpsHook

            self._hook = UpsHook(self.ups_conn_id, ledger=self.ledger)
        return self._hook

    # -- the protocol ------------------------------------------------------------------------------------

    def plan(self, order: Order) -> LabelPlan:
        code = resolve_service(order.ship_method, self.ship_method_map, record=order.number,
                               description=order.ship_method_description)
        refs = rules.references(order, self.reference_fields)
        if not order.packages:
            raise MissingWeight("the order has no package weight", record=order.number, field="weight")
        rules.check_ship_to(order.ship_to, record=order.number)
        if rules.needs_commercial_invoice(order, self.origin_country):
            rules.check_customs_lines(self._customs_ready(order))
        return LabelPlan(service_code=code, service_name=SERVICE_CODES[code], references=refs)

    def validate_address(self, address: Address) -> AddressValidation | None:
        if address.country not in rules.ADDRESS_VALIDATION_COUNTRIES:
            return None
        return self.hook.validate_address(address)

    def buy_label(self, order: Order, plan: LabelPlan, *, shipper: Address,
                  residential: bool | None) -> ShipmentResult:
        """Ship. A 5xx answer comes after UPS received the request, which may have bought the label before
        failing: it is an :class:`AmbiguousRequestError` like a timeout or a dropped connection (the hook's HTTP
        layer already raises that for those, and for the 5xx it retries idempotent calls on)."""
        try:
            return self.hook.create_shipment(
                self._customs_ready(order), service_code=plan.service_code, shipper=shipper, reference=plan.reference,
                extra_references=plan.references[1:], residential=residential,
                negotiated_rates=self.negotiated_rates, reason_for_export=self.reason_for_export)
        except ApiError as exc:
            if exc.status is not None and exc.status >= 500:
                raise AmbiguousRequestError(
                    f"UPS answered the Ship request with HTTP {exc.status} after receiving it ({exc}); the "
                    "label may exist") from exc
            raise

    def find_labels(self, plan: LabelPlan) -> ShipmentResult | None:
        """Labels under the plan's first reference (exact match) shipped in the last
        :data:`REFERENCE_LOOKUP_DAYS` days, voided ones left out. UPS's reference index can lag minutes
        behind a purchase: ``None`` means "not found yet"."""
        found = [r for r in self.hook.track_by_reference(plan.reference, days_back=REFERENCE_LOOKUP_DAYS,
                                                          today=date.today())
                 if plan.reference in r.reference_numbers and r.status is not TrackingStatus.VOIDED]
        if not found:
            return None
        numbers = sorted({r.tracking_number for r in found})
        return ShipmentResult(shipment_id=found[0].shipment_id or numbers[0], tracking_numbers=numbers,
                              warnings=["label adopted from an earlier attempt; recover the image with UPS "
                                        "label recovery if it is needed"])

    def void(self, shipment_id: str, tracking_numbers: Iterable[str] = ()) -> bool:
        return self.hook.void_shipment(shipment_id, list(tracking_numbers))

    def track(self, tracking_number: str) -> TrackingResult:
        return self.hook.track(tracking_number)

    # -- Track Alert (push) and Quantum View (pull) --------------------------------------------------------

    push_source = track_alert.INBOX_SOURCE
    push_lifetime_seconds = track_alert.SUBSCRIPTION_DAYS * 86400.0

    def prepare_push(self, style: str, store: Any, *, previous_valid_until: float) -> bool:
        """v1: the connection's ``track_alert_credential`` becomes the credential the webhook accepts (a changed
        one is a rotation: the old one stays accepted until ``previous_valid_until``). v2: our client id
        (``x-api-key``) and the token client registered in the UPS portal (extras
        ``track_alert_token_client_id`` / ``track_alert_token_client_secret``).

        :raises ConfigurationError: v1 without ``track_alert_credential``.
        """
        from ml_connector import http
        from ml_connector.carriers.ups import (
            webhook,  # FastAPI, requests: imported when used, not at DAG parse
        )

        if style == "v1":
            credential = self.hook.track_alert_credential
            if not credential:
                raise ConfigurationError(
                    f"connection '{self.hook.conn_id}': Track Alert v1 needs the extra 'track_alert_credential' "
                    "(the value UPS sends back in the 'credential' header of every event)")
            return webhook.remember_credential(store, credential, previous_valid_until=previous_valid_until)
        client_id, _ = self.hook.credentials()
        secret = self.hook.extra("track_alert_token_client_secret")
        if secret:
            http.mask(str(secret))
        webhook.remember_v2_client(store, api_key=client_id,
                                   token_client_id=self.hook.extra("track_alert_token_client_id"),
                                   token_client_secret=str(secret) if secret else None)
        return False

    def subscribe_tracking(self, tracking_numbers: Iterable[str], *, style: str, url: str | None = None,
                           kind: str = "standard") -> SubscriptionOutcome:
        """Subscribe in batches of 100; numbers that break UPS's pattern are never sent (they would sink their
        batch), a 400 listing invalid numbers is resubmitted without them, a failed batch fails only its own
        numbers."""
        valid, invalid = track_alert.split_invalid(tracking_numbers)
        outcome = SubscriptionOutcome(invalid=invalid)
        for batch in track_alert.batches(valid):
            try:
                accepted, refused = self.hook.subscribe_packages(batch, style=style, url=url, kind=kind)
            except (ConfigurationError, AuthenticationError):
                raise
            except ConnectorError as exc:
                outcome.failed.update({number: str(exc) for number in batch})
                continue
            outcome.accepted.extend(accepted)
            outcome.invalid.extend(refused)
            # a number UPS lists in neither list was not subscribed: fail it so that it is retried
            outcome.failed.update({n: "not in UPS's answer" for n in batch if n not in accepted and n not in refused})
        return outcome

    def read_pushed(self, payload: str) -> TrackingResult:
        try:
            body = json.loads(payload)
        except ValueError:
            raise RecordError("Track Alert event is not valid JSON", field="body") from None
        return parse_track_alert_result(body)

    def pull_tracking(self, subscription: str) -> list[TrackingResult]:
        return self.hook.quantum_view_events(subscription)
