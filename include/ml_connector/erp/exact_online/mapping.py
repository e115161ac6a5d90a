"""Exact Online documents <-> canonical records. Pure: no I/O, no carrier rules.

Facts (``docs/vendors/erp-and-shipstation.md`` section 4): goods deliveries (``salesorder/GoodsDeliveries``, key
``EntryID``) with their ``GoodsDeliveryLines``; the delivery address is a GUID into ``crm/Addresses``; items
(``logistics/Items``) carry ``GrossWeight``/``NetWeight`` and a ``StatisticalCode`` (the customs tariff code);
dates come as ``/Date(<epoch ms>)/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector.errors import MissingWeight, RecordError, shown
from ml_connector.models import (
    Address,
    Order,
    OrderLine,
    Package,
    TrackingResult,
    TrackingStatus,
    iso_country,
)

_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
#: the GoodsDeliveries fields read (``$select`` is mandatory on this endpoint)
DELIVERY_SELECT = ("EntryID,DeliveryNumber,DeliveryDate,DeliveryAccountName,DeliveryAddress,DeliveryContact,"
                   "Description,Remarks,ShippingMethod,ShippingMethodCode,ShippingMethodDescription,TrackingNumber,"
                   "Modified,GoodsDeliveryLines/ID,GoodsDeliveryLines/Item,GoodsDeliveryLines/ItemCode,"
                   "GoodsDeliveryLines/ItemDescription,GoodsDeliveryLines/QuantityDelivered,"
                   "GoodsDeliveryLines/SalesOrderLineID,GoodsDeliveryLines/SalesOrderNumber,"
                   "GoodsDeliveryLines/TrackingNumber")
ADDRESS_SELECT = ("ID,AccountName,ContactName,AddressLine1,AddressLine2,AddressLine3,City,Postcode,State,Country,"
                  "Phone")
ITEM_SELECT = "ID,Code,Description,GrossWeight,NetWeight,StatisticalCode"
SALES_ORDER_SELECT = "OrderID,OrderNumber,Currency,SalesOrderLines/ID,SalesOrderLines/UnitPrice"
#: the webhook inbox's source name of Exact Online notifications
WEBHOOK_SOURCE = "exact_online"
#: TrackingNumber on a goods delivery (Exact's field length is not published [U]; 1Z numbers have 18)
TRACKING_NUMBER_MAX = 60

#: what the goods delivery's status field says for each UPS status (the pipeline's ``status_texts`` override it)
STATUS_TEXTS: dict[str, str] = {
    TrackingStatus.LABEL_CREATED: "UPS label created",
    TrackingStatus.IN_TRANSIT: "UPS in transit",
    TrackingStatus.OUT_FOR_DELIVERY: "UPS out for delivery",
    TrackingStatus.DELIVERED: "UPS delivered",
    TrackingStatus.EXCEPTION: "UPS exception",
    TrackingStatus.VOIDED: "UPS label voided",
}


def parse_date(value: Any) -> datetime | None:
    """An Exact ``/Date(1700000000000)/`` (epoch milliseconds, UTC) as an aware datetime; ISO text is accepted."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    match = _DATE.match(text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def odata_datetime(value: datetime) -> str:
    """An aware datetime as an OData v3 literal in UTC: ``datetime'2026-11-29T10:15:00'``."""
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone")
    return "datetime'" + value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "'"


def deliveries_filter(start: datetime, end: datetime) -> str:
    """``$filter`` for goods deliveries modified in ``[start, end)``."""
    if start >= end:
        raise ValueError(f"empty interval: {start.isoformat()} is not before {end.isoformat()}")
    return f"Modified ge {odata_datetime(start)} and Modified lt {odata_datetime(end)}"


def guid(value: str) -> str:
    """``guid'...'`` literal of an id (braces dropped)."""
    return f"guid'{str(value).strip('{}')}'"


def results(body: Any) -> list[dict[str, Any]]:
    """The records of an OData v2 answer: ``{"d": {"results": [...]}}``, ``{"d": [...]}`` or ``{"d": {...}}``."""
    d = body.get("d") if isinstance(body, Mapping) else None
    if isinstance(d, Mapping) and isinstance(d.get("results"), list):
        return list(d["results"])
    if isinstance(d, list):
        return d
    if isinstance(d, Mapping):
        return [dict(d)]
    return []


def next_link(body: Any) -> str | None:
    """The ``__next`` URL of a paged answer, if any."""
    d = body.get("d") if isinstance(body, Mapping) else None
    return d.get("__next") if isinstance(d, Mapping) else None


def delivery_lines(delivery: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The expanded ``GoodsDeliveryLines`` (``{"results": [...]}`` or a list)."""
    raw = delivery.get("GoodsDeliveryLines")
    if isinstance(raw, Mapping):
        raw = raw.get("results")
    return [dict(line) for line in raw or [] if isinstance(line, Mapping)]


def delivery_number(delivery: Mapping[str, Any]) -> str:
    """The number a person knows (``DeliveryNumber``), else the entry id."""
    return str(delivery.get("DeliveryNumber") or delivery.get("EntryID"))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _decimal(value: Any, *, record: str, field: str) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise RecordError(f"{field} {shown(value)} is not a number", record=record, field=field) from None


def ship_to(delivery: Mapping[str, Any], address: Mapping[str, Any] | None) -> Address:
    """The delivery address resolved through ``crm/Addresses``.

    :raises RecordError: no address, or one without street, city or a valid country (the field is named).
    """
    record = delivery_number(delivery)
    if not _text(delivery.get("DeliveryAddress")) or not address:
        raise RecordError("the goods delivery has no delivery address (DeliveryAddress is empty or unknown)",
                          record=record, field="DeliveryAddress")
    lines = [line for line in (_text(address.get(f"AddressLine{i}")) for i in (1, 2, 3)) if line]
    if not lines:
        raise RecordError("the delivery address has no street (AddressLine1 is empty)", record=record,
                          field="Addresses.AddressLine1")
    city = _text(address.get("City"))
    if not city:
        raise RecordError("the delivery address has no city", record=record, field="Addresses.City")
    country = (_text(address.get("Country")) or "").upper()
    if iso_country(country) is None:
        raise RecordError(f"the delivery address country {shown(country)} is not an ISO 3166 two-letter code",
                          record=record, field="Addresses.Country")
    name = _text(address.get("AccountName")) or _text(delivery.get("DeliveryAccountName"))
    if not name:
        raise RecordError("the delivery address has no name (AccountName, DeliveryAccountName)", record=record,
                          field="DeliveryAccountName")
    return Address(name=name, attention=_text(address.get("ContactName")), phone=_text(address.get("Phone")),
                   lines=lines, city=city, state=_text(address.get("State")),
                   postal_code=_text(address.get("Postcode")), country=country)


def order_from_goods_delivery(
    delivery: Mapping[str, Any],
    *,
    address: Mapping[str, Any] | None,
    items: Mapping[str, Mapping[str, Any]],
    sales_orders: Mapping[str, Mapping[str, Any]] | None = None,
    weight_unit: str = "KGS",
    item_weights: Mapping[str, Decimal] | None = None,
    default_weight_per_unit: Decimal | None = None,
    item_origin_countries: Mapping[str, str] | None = None,
    default_origin_country: str | None = None,
) -> Order:
    """A goods delivery as an :class:`Order` (one package of the lines' total weight).

    Weight per unit: the item's ``GrossWeight``, else its ``NetWeight``, else the pipeline's ``item_weights``
    (by item code), else ``default_weight_per_unit``; else the delivery is quarantined naming the item. The
    customs values of each line: unit value (``UnitPrice`` of its sales order line) and currency (the sales
    order's ``Currency``), HS code (the item's ``StatisticalCode``), country of origin (``item_origin_countries``
    by item code, else ``default_origin_country``): left empty when unknown, the carrier decides whether it needs
    them.

    :param items: ``logistics/Items`` records by ``ID``.
    :param sales_orders: ``salesorder/SalesOrders`` records (with expanded lines) by order number.
    """
    record = delivery_number(delivery)
    lines_raw = delivery_lines(delivery)
    if not lines_raw:
        raise RecordError("the goods delivery has no lines", record=record, field="GoodsDeliveryLines")
    configured = {str(k).strip().upper(): Decimal(str(v)) for k, v in (item_weights or {}).items()}
    origins = {str(k).strip().upper(): str(v).strip().upper() for k, v in (item_origin_countries or {}).items()}
    prices: dict[str, Decimal] = {}
    currencies: dict[str, str] = {}
    for so in (sales_orders or {}).values():
        so_lines = so.get("SalesOrderLines")
        if isinstance(so_lines, Mapping):
            so_lines = so_lines.get("results")
        for so_line in so_lines or []:
            price = _decimal(so_line.get("UnitPrice"), record=record, field="SalesOrderLines.UnitPrice")
            if price is not None:
                prices[str(so_line.get("ID"))] = price
                if _text(so.get("Currency")):
                    currencies[str(so_line.get("ID"))] = str(so.get("Currency")).strip().upper()
    lines: list[OrderLine] = []
    total = Decimal(0)
    missing: list[str] = []
    for raw in lines_raw:
        code = (_text(raw.get("ItemCode")) or _text(raw.get("Item")) or "?").upper()
        quantity = _decimal(raw.get("QuantityDelivered"), record=record, field="QuantityDelivered") or Decimal(0)
        if quantity <= 0:
            continue
        item = items.get(str(raw.get("Item"))) or {}
        weight = None
        for name in ("GrossWeight", "NetWeight"):
            weight = _decimal(item.get(name), record=record, field=f"Items.{name}")
            if weight is not None and weight > 0:
                break
            weight = None
        if weight is None:
            weight = configured.get(code) or default_weight_per_unit
        if weight is None or weight <= 0:
            missing.append(code)
            continue
        total += weight * quantity
        so_line_id = str(raw.get("SalesOrderLineID"))
        lines.append(OrderLine(
            sku=code, description=_text(raw.get("ItemDescription")) or _text(item.get("Description")),
            quantity=quantity, unit_weight=weight, unit_value=prices.get(so_line_id),
            currency=currencies.get(so_line_id), origin_country=origins.get(code) or default_origin_country,
            hs_code=_text(item.get("StatisticalCode"))))
    if missing:
        raise MissingWeight(f"no weight for item(s) {', '.join(missing)}: set GrossWeight on the item in Exact, "
                            "or add it to the pipeline's item_weights (or default_weight_per_unit)",
                            record=record, field="Items.GrossWeight")
    if not lines:
        raise RecordError("the goods delivery has no quantity delivered", record=record, field="QuantityDelivered")
    return Order(
        erp="exact_online", erp_id=str(delivery.get("EntryID")).strip("{}"), number=record,
        ship_method=_text(delivery.get("ShippingMethodCode")) or _text(delivery.get("ShippingMethod")),
        ship_method_description=_text(delivery.get("ShippingMethodDescription")),
        ship_to=ship_to(delivery, address), lines=lines,
        packages=[Package(weight=total, weight_unit=weight_unit)],
        modified_at=parse_date(delivery.get("Modified")),
    )


def tracking_body(tracking_number: str) -> dict[str, str]:
    """``{"TrackingNumber": ...}`` for a PUT on the goods delivery (and its lines).

    :raises RecordError: empty or longer than the field.
    """
    text = (tracking_number or "").strip()
    if not text or len(text) > TRACKING_NUMBER_MAX:
        raise RecordError(f"tracking number {shown(text)} does not fit Exact's TrackingNumber",
                          field="TrackingNumber")
    return {"TrackingNumber": text}


def status_text(tracking: TrackingResult, texts: Mapping[str, str] | None = None) -> str:
    """The status line written onto the goods delivery: the mapped UPS status, and for a delivery its time and
    who signed (the delivery confirmation)."""
    table = {**STATUS_TEXTS, **(texts or {})}
    text = table.get(tracking.status, f"UPS {tracking.status.value}")
    if tracking.status is TrackingStatus.DELIVERED and tracking.delivered_at is not None:
        text += " " + tracking.delivered_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if tracking.received_by:
            text += f", signed by {tracking.received_by}"
    return f"{text} ({tracking.tracking_number})"


def error_message(body: Any) -> str | None:
    """Exact's error text: ``{"error": {"code", "message": {"lang", "value"}}}``."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            message = error.get("message")
            if isinstance(message, Mapping):
                return _text(message.get("value"))
            return _text(message)
        if isinstance(error, str):
            return _text(body.get("error_description")) or error
    if isinstance(body, str):
        return _text(body[:300])
    return None
