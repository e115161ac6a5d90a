"""Business Central (API v2.0) field mapping: salesOrder JSON -> :class:`Order`, tracking -> write-back body.

Pure functions only; :mod:`ml_connector.erp.business_central.hook` does the HTTP. Field names follow the v2.0
pages in microsoft/ALAppExtensions (``APIV2SalesOrders.Page.al``, ``APIV2SalesOrderLines.Page.al``) as
summarised in ``docs/vendors/erp-and-shipstation.md`` section 1; the write-back fields are those of the custom
API page in ``ml_connector/erp/business_central/al`` (``MLShipmentTracking.Page.al``), which is the only way to write a
tracking number back: API v2.0 exposes no shipping agent or package tracking field.

Weight rule (API v2.0 items carry no weight, so the ERP cannot supply one):

1. ``item_weights[item number]`` (pipeline setting, per unit of the sales line's unit of measure), else
2. ``default_weight_per_unit`` (pipeline setting), else
3. :class:`MissingWeight` naming the order and every item number without a weight.

A weight is never defaulted to zero: zero or negative settings count as missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ml_connector.errors import MissingWeight, RecordError, shown
from ml_connector.models import Address, Order, OrderLine, Package, TrackingStatus, iso_country

ERP_NAME = "business_central"

# The custom API page (ml_connector/erp/business_central/al) lives at /api/{publisher}/{group}/{version}/companies({id})/{set}.
# These are the defaults of the connection extras writeback_api_publisher/group/version.
WRITEBACK_API_PUBLISHER = "mlconnector"
WRITEBACK_API_GROUP = "shipping"
WRITEBACK_API_VERSION = "v1.0"
WRITEBACK_ENTITY_SET = "salesOrderShipping"

# Field names of the custom API page; keep in step with MLShipmentTracking.Page.al.
FIELD_PACKAGE_TRACKING_NO = "packageTrackingNo"
FIELD_SHIPPING_AGENT_CODE = "shippingAgentCode"
FIELD_SHIPPING_AGENT_SERVICE_CODE = "shippingAgentServiceCode"
FIELD_SHIPMENT_STATUS = "mlShipmentStatus"
FIELD_LAST_TRACKING_EVENT = "mlLastTrackingEvent"
FIELD_DELIVERED_AT = "mlDeliveredAt"

# Lengths of the underlying table fields: BC rejects longer values with an error, so check before sending.
PACKAGE_TRACKING_NO_MAX = 50  # Sales Header field 106, Text[50] (Text[30] before the CLEAN24 change)
CODE10_MAX = 10  # "Shipping Agent Code" (105), "Shipping Agent Service Code" (5794): Code[10]
SHIPMENT_STATUS_MAX = 30  # "ML Shipment Status" Text[30] (table extension)
LAST_TRACKING_EVENT_MAX = 100  # "ML Last Tracking Event" Text[100] (table extension)

WeightUnit = Literal["LBS", "KGS", "OZS"]


def order_from_sales_order(
    doc: Mapping[str, Any],
    *,
    default_weight_per_unit: Decimal | None,
    item_weights: Mapping[str, Decimal] | None = None,
    weight_unit: WeightUnit = "LBS",
    default_country: str | None = None,
) -> Order:
    """Map one API v2.0 salesOrder (read with ``$expand=salesOrderLines,shipmentMethod``) to an Order.

    :param doc: the salesOrder JSON object, ``@odata.etag`` included.
    :param default_weight_per_unit: weight of one unit of any item without an ``item_weights`` entry.
    :param item_weights: unit weight per item number (``lineObjectNumber``), in ``weight_unit``.
    :param weight_unit: unit of every weight above and of the resulting package.
    :param default_country: country for a ship-to address with an empty Country/Region Code. BC
        localisations commonly leave it empty for domestic addresses; the hook passes the company's
        country (companyInformation) when the pipeline allows it. ``None``: an empty country is an error.
    :raises RecordError: the ship-to address is incomplete (no country, street, city or name; the message
        names the Business Central field). Whether a carrier can deliver there is the carrier's rule.
    :raises MissingWeight: some item lines have no weight from either setting.
    """
    number = _text(doc.get("number")) or _text(doc.get("id")) or "<no number>"
    ship_to = _ship_to(doc, number, default_country)
    lines = _item_lines(doc, number)
    weights = _unit_weights(lines, number, default_weight_per_unit, item_weights)
    # customs values for international shipments (the carrier decides whether it needs them): the line's unit
    # price in the order's currency; an empty currency code or price is left empty, never guessed
    prices = _unit_prices(doc, number)
    currency = (_text(doc.get("currencyCode")) or "").upper() or None
    order_lines = [
        OrderLine(sku=sku, description=description, quantity=quantity, unit_weight=weights[sku],
                  unit_value=prices.get(sku), currency=currency)
        for sku, description, quantity in lines
    ]
    total = sum((line.quantity * weights[line.sku] for line in order_lines), Decimal(0))
    return Order(
        erp=ERP_NAME,
        erp_id=str(doc["id"]),
        number=number,
        ship_method=_ship_method(doc),
        ship_method_description=_ship_method_description(doc),
        ship_to=ship_to,
        packages=[Package(weight=total, weight_unit=weight_unit)],
        lines=order_lines,
        modified_at=parse_datetime(doc.get("lastModifiedDateTime")),
        etag=_text(doc.get("@odata.etag")),
        customer_reference=_text(doc.get("externalDocumentNumber")),
    )


def address_from_company_information(info: Mapping[str, Any]) -> Address:
    """Map the v2.0 ``companyInformation`` entity to the default ship-from address.

    :raises RecordError: the company address lacks a street, city or country (fix it in Company Information).
    """
    name = _text(info.get("displayName"))
    country = (_text(info.get("country")) or "").upper()
    street = [line for line in (_text(info.get("addressLine1")), _text(info.get("addressLine2"))) if line]
    city = _text(info.get("city"))
    for value, field in ((name, "displayName"), (street, "addressLine1"), (city, "city"), (country, "country")):
        if not value:
            raise RecordError(f"Company Information has no {field}; fill it in Business Central "
                              "or set a ship-from address in the pipeline settings", field=field)
    return Address(
        name=name, phone=_text(info.get("phoneNumber")), email=_text(info.get("email")), lines=street,
        city=city, state=_text(info.get("state")), postal_code=_text(info.get("postalCode")), country=country,
    )


def tracking_patch(
    tracking_number: str,
    *,
    shipping_agent_code: str | None = "UPS",
    service_code: str | None,
    status: TrackingStatus | str | None = None,
    last_event: str | None = None,
    delivered_at: datetime | None = None,
) -> dict[str, str]:
    """Build the PATCH body for the custom API page ``salesOrderShipping`` (send with ``If-Match``).

    Keys whose value is ``None`` are left out so that a PATCH never clears what an earlier one wrote.

    :param tracking_number: the carrier's tracking number (UPS 1Z...), at most 50 characters.
    :param shipping_agent_code: BC Shipping Agent code (Code[10]) whose Internet Address builds the
        "Track package" link in BC; ``None`` to leave the order's agent unchanged.
    :param service_code: BC Shipping Agent Service code (Code[10]) under that agent, e.g. ``GROUND``.
    :param status: fulfillment status shown on the order (``TrackingStatus`` value or free text, <= 30).
    :param last_event: latest tracking event description (cut to 100 characters; it is informational).
    :param delivered_at: delivery time (timezone-aware), written as a UTC ISO-8601 literal.
    :raises RecordError: a value does not fit its Business Central field.
    """
    tracking = (tracking_number or "").strip()
    if not tracking:
        raise RecordError("no tracking number to write back", field=FIELD_PACKAGE_TRACKING_NO)
    if len(tracking) > PACKAGE_TRACKING_NO_MAX:
        raise RecordError(
            f"tracking number {tracking!r} has {len(tracking)} characters; Business Central's "
            f"Package Tracking No. holds {PACKAGE_TRACKING_NO_MAX}", field=FIELD_PACKAGE_TRACKING_NO)
    body: dict[str, str] = {FIELD_PACKAGE_TRACKING_NO: tracking}
    for field, value in ((FIELD_SHIPPING_AGENT_CODE, shipping_agent_code),
                         (FIELD_SHIPPING_AGENT_SERVICE_CODE, service_code)):
        if value is None:
            continue
        # BC upper-cases Code fields itself; doing it here keeps the etag-compare/read-back stable.
        code = value.strip().upper()
        if not code or len(code) > CODE10_MAX:
            raise RecordError(f"{field} {value!r} must be 1 to {CODE10_MAX} characters (a Business Central "
                              "Code[10]); fix the pipeline's shipping agent settings", field=field)
        body[field] = code
    if status is not None:
        text = status.value if isinstance(status, TrackingStatus) else str(status).strip()
        if len(text) > SHIPMENT_STATUS_MAX:
            raise RecordError(f"shipment status {text!r} is longer than {SHIPMENT_STATUS_MAX} characters",
                              field=FIELD_SHIPMENT_STATUS)
        body[FIELD_SHIPMENT_STATUS] = text
    if last_event is not None:
        event = " ".join(last_event.split())
        if len(event) > LAST_TRACKING_EVENT_MAX:
            event = event[: LAST_TRACKING_EVENT_MAX - 3] + "..."
        body[FIELD_LAST_TRACKING_EVENT] = event
    if delivered_at is not None:
        body[FIELD_DELIVERED_AT] = format_datetime(delivered_at)
    return body


def sales_orders_filter(start: datetime, end: datetime) -> str:
    """OData ``$filter`` for released orders modified in ``[start, end)``.

    API v2.0 ``status eq 'Open'`` means *Released* (or Pending Prepayment) in BC terms; BC-open orders
    show as ``Draft``. Datetimes are unquoted ISO-8601 UTC literals, as the BC docs show.

    :raises ValueError: a naive datetime, or ``start`` not before ``end``.
    """
    if start >= end:
        raise ValueError(f"empty interval: start {start.isoformat()} is not before end {end.isoformat()}")
    return (f"status eq 'Open' and lastModifiedDateTime ge {format_datetime(start)} "
            f"and lastModifiedDateTime lt {format_datetime(end)}")


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as BC writes it: UTC, ``Z`` suffix, fraction only when there is one."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone; Business Central needs UTC instants")
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_datetime(value: Any) -> datetime | None:
    """Parse a BC Edm.DateTimeOffset (``2026-11-01T10:15:30.123Z``, up to 7 fraction digits) as aware UTC."""
    text = _text(value)
    if text is None:
        return None
    # BC writes 0001-01-01T00:00:00Z for "never"; treat it as absent.
    if text.startswith("0001-01-01"):
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# --------------------------------------------------------------------------------------------- helpers


def _text(value: Any) -> str | None:
    """BC returns empty strings for empty Text/Code fields; the canonical model wants None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _decimal(value: Any, *, number: str, field: str) -> Decimal:
    try:
        # str() first: json floats (0.1) must not turn into binary-fraction Decimals.
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise RecordError(f"{field} {value!r} is not a number", record=number, field=field) from exc


def _ship_method(doc: Mapping[str, Any]) -> str | None:
    method = doc.get("shipmentMethod")
    if not isinstance(method, Mapping):
        return None
    return _text(method.get("code")) or _text(method.get("displayName"))


def _ship_method_description(doc: Mapping[str, Any]) -> str | None:
    method = doc.get("shipmentMethod")
    if not isinstance(method, Mapping):
        return None
    return _text(method.get("displayName"))


def _ship_to(doc: Mapping[str, Any], number: str, default_country: str | None) -> Address:
    country = (_text(doc.get("shipToCountry")) or _text(default_country) or "").upper()
    if not country:
        raise RecordError("ship-to address has no country (shipToCountry is empty); set the Ship-to "
                          "Country/Region Code on the order", record=number, field="shipToCountry")
    if iso_country(country) is None:
        raise RecordError(f"ship-to country {shown(country)} is not an ISO 3166 two-letter country code; use the "
                          "two-letter Country/Region Code on the order", record=number, field="shipToCountry")
    street = [line for line in (_text(doc.get("shipToAddressLine1")), _text(doc.get("shipToAddressLine2")))
              if line]
    if not street:
        raise RecordError("ship-to address has no street (shipToAddressLine1 is empty); enter the "
                          "Ship-to Address on the order", record=number, field="shipToAddressLine1")
    city = _text(doc.get("shipToCity"))
    if not city:
        raise RecordError("ship-to address has no city (shipToCity is empty)", record=number,
                          field="shipToCity")
    # Whether the carrier can deliver there (postal code, state, PO boxes) is the carrier's rule, not the ERP's.
    postal_code = _text(doc.get("shipToPostCode"))
    state = _text(doc.get("shipToState"))
    name = _text(doc.get("shipToName")) or _text(doc.get("customerName"))
    if not name:
        raise RecordError("ship-to address has no name (shipToName and customerName are empty)",
                          record=number, field="shipToName")
    return Address(
        name=name, attention=_text(doc.get("shipToContact")), phone=_text(doc.get("phoneNumber")),
        email=_text(doc.get("email")), lines=street, city=city, state=state, postal_code=postal_code,
        country=country,
    )


def _item_lines(doc: Mapping[str, Any], number: str) -> list[tuple[str, str | None, Decimal]]:
    """Item lines still to ship as ``(item number, description, quantity)``.

    Comment, G/L account, resource and charge lines carry no goods. The quantity is what is still
    outstanding (``quantity - shippedQuantity``) so that a partly shipped order is not weighed twice.
    """
    raw = doc.get("salesOrderLines")
    if raw is None:
        raise RecordError("salesOrderLines missing: read the order with $expand=salesOrderLines",
                          record=number, field="salesOrderLines")
    result: list[tuple[str, str | None, Decimal]] = []
    for line in raw:
        if _text(line.get("lineType")) != "Item":
            continue
        sku = _text(line.get("lineObjectNumber"))
        if sku is None:
            raise RecordError(f"item line {line.get('sequence')} has no item number", record=number,
                              field="lineObjectNumber")
        quantity = _decimal(line.get("quantity") or 0, number=number, field="quantity")
        shipped = _decimal(line.get("shippedQuantity") or 0, number=number, field="shippedQuantity")
        outstanding = quantity - shipped
        if outstanding > 0:
            result.append((sku.upper(), _text(line.get("description")), outstanding))
    if not result:
        raise RecordError("no item quantity left to ship (no Item lines, or all shipped already)",
                          record=number, field="salesOrderLines")
    return result


def _unit_prices(doc: Mapping[str, Any], number: str) -> dict[str, Decimal]:
    """Item number -> ``unitPrice`` of its (first) item line with a price above zero."""
    prices: dict[str, Decimal] = {}
    for line in doc.get("salesOrderLines") or []:
        sku = _text(line.get("lineObjectNumber"))
        if _text(line.get("lineType")) != "Item" or sku is None or line.get("unitPrice") in (None, ""):
            continue
        price = _decimal(line.get("unitPrice"), number=number, field="unitPrice")
        if price > 0:
            prices.setdefault(sku.upper(), price)
    return prices


def _unit_weights(
    lines: Iterable[tuple[str, str | None, Decimal]],
    number: str,
    default_weight_per_unit: Decimal | None,
    item_weights: Mapping[str, Decimal] | None,
) -> dict[str, Decimal]:
    configured = {str(k).strip().upper(): Decimal(str(v)) for k, v in (item_weights or {}).items()}
    default = Decimal(str(default_weight_per_unit)) if default_weight_per_unit is not None else None
    weights: dict[str, Decimal] = {}
    missing: list[str] = []
    for sku, _description, _quantity in lines:
        weight = configured.get(sku)
        if weight is None or weight <= 0:
            weight = default
        if weight is None or weight <= 0:
            if sku not in missing:
                missing.append(sku)
            continue
        weights[sku] = weight
    if missing:
        raise MissingWeight(
            f"no weight for item(s) {', '.join(missing)}: Business Central API v2.0 items carry no weight; "
            "add them to the pipeline's item_weights setting or set default_weight_per_unit",
            record=number, field="item_weights")
    return weights
