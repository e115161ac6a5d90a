"""Acumatica as an :class:`~ml_connector.erp.protocol.OrderSource`: released shipments in; per package the 1Z,
the label file and the delivery status back on the shipment."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from ml_connector.erp.acumatica import mapping as acu
from ml_connector.erp.customs import CustomsValues, wants_customs_values
from ml_connector.erp.protocol import ExtractFailure, OrderSource
from ml_connector.errors import ApiError, AuthenticationError, ConfigurationError, RecordError
from ml_connector.models import Address, Label, Money, Order, TrackingResult
from ml_connector.settings import PipelineSettings

log = logging.getLogger(__name__)

STATUS_VALUES = ("status", "last_event", "delivered_at", "received_by")


class AcumaticaSettings(PipelineSettings):
    """Pipeline settings of an Acumatica pipeline (every one has a documented default; see README).

    :param ready_statuses: shipment ``Status`` values that are ready for a label. Default ``["Open"]`` (a shipment
        that was created and released for picking/packing); add ``"Confirmed"`` to label confirmed shipments too.
    :param skip_on_hold: leave shipments with ``Hold`` set alone (default on).
    :param dimension_unit: unit of the package rows' Length/Width/Height (company-level in Acumatica).
    :param attach_label: attach each label file to the shipment (``files:put``), default on.
    :param write_freight_cost: put the label's charge (the negotiated one when UPS returned it) into the
        shipment's ``FreightCost`` (default off; the shipment's freight currency is not checked).
    :param status_note: keep one ml-connector status line per package (status, last scan, delivery time,
        signature) in the shipment's note, replacing only that line (default on).
    :param status_custom_fields: ``status``/``last_event``/``delivered_at``/``received_by`` -> ``View.Field`` of
        a custom field on the shipment (``Document.UsrUPSStatus``), written only on change.
    :param push_key_field: the column of the push notification's Generic Inquiry that holds the shipment
        number (default ``ShipmentNbr``).
    :param customs_values: when to read the values of a commercial invoice (the shipment's lines carry no
        price): each sales order in the shipment's ``Orders`` (line ``UnitPrice``, ``CurrencyID``) and each
        item's ``StockItem`` (``CountryOfOrigin``, ``TariffCode``), one read each per task: ``foreign``
        (shipments to another country than ship_from's, default), ``always`` or ``never``. An origin the item
        lacks comes from ``item_origin_countries`` / ``default_origin_country``.
    """

    erp: Literal["acumatica"] = "acumatica"
    ready_statuses: list[str] = Field(default_factory=lambda: ["Open"], min_length=1)
    skip_on_hold: bool = True
    dimension_unit: Literal["IN", "CM"] = "IN"
    attach_label: bool = True
    write_freight_cost: bool = False
    status_note: bool = True
    status_custom_fields: dict[str, str] = Field(default_factory=dict)
    push_key_field: str = "ShipmentNbr"
    customs_values: CustomsValues = "foreign"

    @field_validator("status_custom_fields")
    @classmethod
    def _known_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            if name not in STATUS_VALUES:
                raise ValueError(f"{name!r} is not one of {', '.join(STATUS_VALUES)}")
            view, dot, field = target.partition(".")
            if not (view and dot and field):
                raise ValueError(f"{target!r} must be View.Field, e.g. Document.UsrUPSStatus")
        return value


class AcumaticaSource(OrderSource):
    """Acumatica's contract-based REST API through :class:`~ml_connector.erp.acumatica.hook.AcumaticaHook`."""

    erp = "acumatica"
    push_source = "acumatica"  # the webhook inbox source of Acumatica push notifications (webhook.py)
    settings: AcumaticaSettings

    def __init__(self, settings: PipelineSettings, hook: Any | None = None) -> None:
        super().__init__(settings, hook)
        self._ship_via: dict[str, str] | None = None
        self._sales_orders: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._stock_items: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def make_hook(cls, settings: PipelineSettings) -> Any:
        from ml_connector.erp.acumatica.hook import AcumaticaHook

        return AcumaticaHook(settings.erp_connection_id)

    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        yield from self._map(self.hook.iter_shipments(start, end, statuses=list(self.settings.ready_statuses)))

    def ship_via_descriptions(self) -> dict[str, str]:
        """The Ship Via codes' descriptions, read once per source; an instance that refuses them (no rights on
        Ship Via Codes) leaves the codes alone."""
        if self._ship_via is None:
            try:
                self._ship_via = self.hook.ship_via_descriptions()
            except ApiError as exc:
                if exc.retryable or isinstance(exc, AuthenticationError):
                    raise
                log.warning("Ship Via descriptions not readable (%s): Ship Via codes are resolved by code only", exc)
                self._ship_via = {}
        return self._ship_via

    def customs_records(self, doc: dict[str, Any]) -> tuple[dict[tuple[str, str], dict[str, Any]],
                                                            dict[str, dict[str, Any]]]:
        """The shipment's sales orders and stock items when ``customs_values`` asks for them (each read once per
        source, whatever the number of shipments naming it); empty otherwise."""
        if not wants_customs_values(self.settings.customs_values, self.settings.ship_from, acu.ship_to_country(doc)):
            return {}, {}
        for key in acu.sales_order_keys(doc):
            if key not in self._sales_orders:
                self._sales_orders[key] = self.hook.get_sales_order(*key)
                if self._sales_orders[key] is None:
                    log.warning("shipment %s: sales order %s %s not found; its lines carry no value",
                                acu.shipment_number(doc), *key)
        for sku in acu.item_ids(doc):
            if sku not in self._stock_items:
                self._stock_items[sku] = self.hook.get_stock_item(sku)
        sales_orders = {k: so for k in acu.sales_order_keys(doc) if (so := self._sales_orders.get(k))}
        stock_items = {k: item for k in acu.item_ids(doc) if (item := self._stock_items.get(k))}
        return sales_orders, stock_items

    def _map(self, docs: Iterable[dict[str, Any]]) -> Iterator[Order | ExtractFailure]:
        s = self.settings
        for doc in docs:
            number = acu.shipment_number(doc)
            why = acu.ready_to_ship(doc, statuses=s.ready_statuses, skip_on_hold=s.skip_on_hold)
            if why:
                log.info("shipment %s skipped: %s", number, why)
                continue
            try:
                sales_orders, stock_items = self.customs_records(doc)
                yield acu.order_from_shipment(
                    doc, default_weight_per_unit=s.default_weight_per_unit, item_weights=s.item_weights,
                    weight_unit=s.weight_unit, dimension_unit=s.dimension_unit,
                    ship_via_descriptions=self.ship_via_descriptions(), sales_orders=sales_orders,
                    stock_items=stock_items)
            except RecordError as exc:
                yield ExtractFailure(erp=self.erp, erp_id=str(doc.get("id") or number), number=number,
                                     modified_at=acu.parse_datetime(doc.get("LastModifiedDateTime")), error=exc)

    def pushed(self, payloads: list[dict[str, Any]]) -> Iterator[Order | ExtractFailure]:
        numbers = list(dict.fromkeys(n for p in payloads for n in acu.shipment_numbers(p, self.settings.push_key_field)))
        for number in numbers:
            try:
                doc = self.hook.get_shipment(number, expand=acu.SHIPMENT_EXPAND)
            except RecordError as exc:
                log.warning("pushed shipment %s: %s", number, exc)
                continue
            yield from self._map([doc])

    def ship_from(self) -> Address:
        if self.settings.ship_from is None:
            raise ConfigurationError(
                "Acumatica pipelines need a ship_from address in the pipeline settings (the warehouse the "
                "packages leave from); set ship_from in include/pipelines.yaml")
        return self.settings.ship_from

    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        doc = self.hook.get_shipment(order.number, expand="Packages")
        body = acu.tracking_put(doc, tracking_numbers)
        if body is None:
            log.info("shipment %s already holds %s", order.number, ", ".join(tracking_numbers))
            return
        self.hook.put_shipment(body, expand="Packages")

    def write_charges(self, order: Order, charges: Money) -> None:
        if not self.settings.write_freight_cost:
            return
        body = acu.freight_put(self.hook.get_shipment(order.number, expand=None), charges.amount)
        if body is not None:
            self.hook.put_shipment(body, expand=None)

    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        custom = self.settings.status_custom_fields
        doc = self.hook.get_shipment(order.number, expand=None, custom=acu.custom_select(custom.values()))
        body = acu.status_put(doc, tracking, write_note=self.settings.status_note, custom_fields=custom)
        if body is not None:
            self.hook.put_shipment(body, expand=None)

    def attach_label(self, order: Order, label: Label, filename: str) -> bool:
        if not self.settings.attach_label:
            return False
        doc = self.hook.get_shipment(order.number, expand=None)
        self.hook.put_file(doc, filename, label.image)
        return True

