"""Exact Online as an :class:`~ml_connector.erp.protocol.OrderSource`: goods deliveries in, the tracking number
and the UPS status out, on the goods delivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ml_connector.erp.customs import CustomsValues, wants_customs_values
from ml_connector.erp.exact_online import mapping as exact
from ml_connector.erp.protocol import ExtractFailure, OrderSource
from ml_connector.errors import ConfigurationError, RecordError
from ml_connector.models import Address, Order, TrackingResult
from ml_connector.settings import PipelineSettings


class ExactOnlineSettings(PipelineSettings):
    """Pipeline settings of an Exact Online pipeline.

    The country of origin comes from the common settings ``item_origin_countries`` / ``default_origin_country``
    (Exact items carry none); unset, a delivery leaving the customs area is quarantined naming ``origin_country``.

    :param weight_unit: the unit of the items' ``GrossWeight`` (Exact does not say; kilograms by default).
    :param customs_values: when to read the sales order's prices and currency for the commercial invoice:
        ``foreign`` (deliveries to another country than the ship-from's, default), ``always`` or ``never``.
    :param tracking_on_lines: also write the tracking number on every goods delivery line.
    :param status_field: the goods delivery field the UPS status is written to (``Remarks``) [U: Exact's goods
        delivery has no documented shipping-status field].
    :param status_texts: UPS status (``in_transit``, ``delivered``...) -> the text written.
    :param skip_tracked: a goods delivery that already has a tracking number was shipped by someone else: skip it.
    """

    erp: Literal["exact_online"] = "exact_online"
    weight_unit: Literal["LBS", "KGS"] = "KGS"
    customs_values: CustomsValues = "foreign"
    tracking_on_lines: bool = False
    status_field: str = Field("Remarks", min_length=1, max_length=60)
    status_texts: dict[str, str] = Field(default_factory=dict)
    skip_tracked: bool = True


class ExactOnlineSource(OrderSource):
    """Exact Online goods deliveries through :class:`~ml_connector.erp.exact_online.hook.ExactOnlineHook`."""

    erp = "exact_online"
    settings: ExactOnlineSettings

    def __init__(self, settings: PipelineSettings, hook: Any | None = None) -> None:
        super().__init__(settings, hook)
        self._addresses: dict[str, dict[str, Any] | None] = {}
        self._items: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def make_hook(cls, settings: PipelineSettings) -> Any:
        from ml_connector.erp.exact_online.hook import ExactOnlineHook

        return ExactOnlineHook(settings.erp_connection_id)

    def _address(self, address_id: str | None) -> dict[str, Any] | None:
        if not address_id:
            return None
        if address_id not in self._addresses:
            self._addresses[address_id] = self.hook.get_address(address_id)
        return self._addresses[address_id]

    def _item(self, item_id: str) -> dict[str, Any] | None:
        if item_id not in self._items:
            self._items[item_id] = self.hook.get_item(item_id)
        return self._items[item_id]

    def order_from(self, delivery: dict[str, Any]) -> Order:
        """Resolve one goods delivery's address, items and (for customs) its sales orders, then map it."""
        address = self._address(delivery.get("DeliveryAddress"))
        lines = exact.delivery_lines(delivery)
        items = {str(line.get("Item")): item for line in lines if line.get("Item")
                 for item in [self._item(str(line.get("Item")))] if item}
        sales_orders: dict[str, dict[str, Any]] = {}
        if wants_customs_values(self.settings.customs_values, self.settings.ship_from,
                                str((address or {}).get("Country") or "")):
            for number in {line.get("SalesOrderNumber") for line in lines if line.get("SalesOrderNumber")}:
                so = self.hook.get_sales_order(number)
                if so:
                    sales_orders[str(number)] = so
        return exact.order_from_goods_delivery(
            delivery, address=address, items=items, sales_orders=sales_orders,
            weight_unit=self.settings.weight_unit, item_weights=self.settings.item_weights,
            default_weight_per_unit=self.settings.default_weight_per_unit,
            item_origin_countries=self.settings.item_origin_countries,
            default_origin_country=self.settings.default_origin_country)

    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        seen: set[str] = set()
        for delivery in self.hook.iter_goods_deliveries(start, end):
            seen.add(str(delivery.get("EntryID")).strip("{}").lower())
            yield from self._one(delivery)
        yield from self._from_webhooks(seen)

    def _one(self, delivery: dict[str, Any]) -> Iterator[Order | ExtractFailure]:
        if self.settings.skip_tracked and (delivery.get("TrackingNumber") or "").strip():
            return
        try:
            yield self.order_from(delivery)
        except RecordError as exc:
            yield ExtractFailure(erp=self.erp, erp_id=str(delivery.get("EntryID")).strip("{}"),
                                 number=exact.delivery_number(delivery),
                                 modified_at=exact.parse_date(delivery.get("Modified")), error=exc)

    def _from_webhooks(self, seen: set[str]) -> Iterator[Order | ExtractFailure]:
        """Goods deliveries announced by webhook (the inbox holds only their keys): fetched here, once."""
        ledger = getattr(self.hook, "ledger", None)
        if ledger is None or not hasattr(ledger, "inbox_pending"):
            return
        for entry in ledger.inbox_pending(exact.WEBHOOK_SOURCE):
            payload = json.loads(entry["payload"])
            key = str(payload.get("key") or "").strip("{}").lower()
            if payload.get("topic") != "GoodsDeliveries" or payload.get("action") == "Delete" or not key \
                    or key in seen:
                ledger.inbox_done(entry["id"])
                continue
            seen.add(key)
            try:
                delivery = self.hook.get_goods_delivery(key)
            except RecordError as exc:  # deleted since: nothing to ship
                ledger.inbox_done(entry["id"], error=str(exc))
                continue
            yield from self._one(delivery)
            ledger.inbox_done(entry["id"])

    def ship_from(self) -> Address:
        if self.settings.ship_from is None:
            raise ConfigurationError("Exact Online pipelines need the ship_from setting (the warehouse address "
                                     "printed on labels) in include/pipelines.yaml")
        return self.settings.ship_from

    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        body = exact.tracking_body(tracking_numbers[0])
        self.hook.update_goods_delivery(order.erp_id, body)
        if self.settings.tracking_on_lines:
            for line in exact.delivery_lines(self.hook.get_goods_delivery(order.erp_id)):
                if line.get("ID") and line.get("TrackingNumber") != body["TrackingNumber"]:
                    self.hook.update_goods_delivery_line(str(line["ID"]), body)

    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        text = exact.status_text(tracking, self.settings.status_texts)
        self.hook.update_goods_delivery(order.erp_id, {self.settings.status_field: text})


