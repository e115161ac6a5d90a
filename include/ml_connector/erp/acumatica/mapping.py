"""Acumatica (contract-based REST API, Default endpoint) field mapping: Shipment JSON -> :class:`Order`,
tracking and status -> the ``PUT .../Shipment`` bodies.

Pure functions only; :mod:`ml_connector.erp.acumatica.hook` does the HTTP. Field names follow the Default
24.200.001 ``Shipment`` entity (``docs/vendors/erp-and-shipstation.md`` section 2): every field is read and
written wrapped as ``{"value": ...}`` (an empty field comes back as ``{}``), and detail rows (``Packages``)
carry their own ``id``.

One Acumatica shipment is one :class:`Order`: ``number`` is the ``ShipmentNbr`` (unique per shipment, so the
label's first reference finds exactly this shipment again), ``customer_reference`` the sales order number
(``Orders[0].OrderNbr``), and each ``Packages`` row one :class:`Package` (one 1Z each).

Customs values (for the commercial invoice of a shipment leaving the customs area): shipment detail lines carry
no price, the sales order lines do. The source reads each sales order named in the shipment's ``Orders``
(:data:`SALES_ORDER_SELECT`) and each item's ``StockItem`` (:data:`STOCK_ITEM_SELECT`) when the
``customs_values`` setting asks for them; a shipment line takes ``UnitPrice`` of its sales order line (matched
by ``OrderType``/``OrderNbr``/``OrderLineNbr``, else by ``InventoryID``), the sales order's ``CurrencyID``, and
the stock item's ``CountryOfOrigin`` and ``TariffCode`` (dots and spaces dropped). A value Acumatica does not
have stays empty: the pipeline's ``item_origin_countries`` / ``default_origin_country`` fill the origin, and the
carrier quarantines a shipment whose invoice still lacks something, naming the line and the field.

Weight rule per package row: its ``Weight`` when > 0; else (a shipment with no package rows at all) one package
weighed from the shipment's ``Details`` with the pipeline's ``item_weights`` / ``default_weight_per_unit``;
else :class:`MissingWeight` naming the shipment and the field. A weight is never defaulted to zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ml_connector.errors import MissingWeight, RecordError, shown
from ml_connector.models import Address, Dimensions, Order, OrderLine, Package, TrackingResult, iso_country

ERP_NAME = "acumatica"
#: the detail and linked entities an extraction must name in ``$expand`` (contract v4 returns none otherwise)
SHIPMENT_EXPAND = "Packages,Details,Orders,ShippingSettings/ShipToAddress,ShippingSettings/ShipToContact"
#: what a sales order read for customs values returns: its currency and its lines' prices (``$expand=Details``)
SALES_ORDER_SELECT = "OrderType,OrderNbr,CurrencyID,Details/LineNbr,Details/InventoryID,Details/UnitPrice"
#: what a stock item read for customs values returns
STOCK_ITEM_SELECT = "InventoryID,CountryOfOrigin,TariffCode"
#: Acumatica's ShipmentPackage.TrackingNbr is nvarchar(255) in SOPackageDetail [U]: refused when longer
TRACKING_NBR_MAX = 255
#: the first characters of the line ml-connector keeps in the shipment's note (one line, replaced in place)
NOTE_PREFIX = "[ml-connector UPS]"

WeightUnit = Literal["LBS", "KGS"]
_WEIGHT_UNITS = {"LB": "LBS", "LBS": "LBS", "POUND": "LBS", "KG": "KGS", "KGS": "KGS", "KILOGRAM": "KGS"}
_LENGTH_UNITS = {"IN": "IN", "INCH": "IN", "CM": "CM", "CENTIMETER": "CM"}


# -------------------------------------------------------------------------------------------- values


def value(field: Any) -> Any:
    """The value inside Acumatica's wrapping: ``{"value": x}`` -> x; ``{}`` or a missing field -> None."""
    if isinstance(field, Mapping):
        return field.get("value")
    return field


def wrap(raw: Any) -> dict[str, Any]:
    """``x`` -> ``{"value": x}`` (every field Acumatica is sent is wrapped)."""
    return {"value": raw}


def text(field: Any) -> str | None:
    """A wrapped text field, stripped; empty -> None."""
    raw = value(field)
    if raw is None:
        return None
    result = str(raw).strip()
    return result or None


def parse_datetime(field: Any) -> datetime | None:
    """Parse an Acumatica DateTime (``2026-11-29T10:31:28.402+03:00``; without an offset it is taken as UTC)."""
    raw = text(field)
    if raw is None:
        return None
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_datetimeoffset(instant: datetime) -> str:
    """An aware instant as ``2026-11-29T10:31:28.402000+00:00`` (the caller URL-encodes it: ``+`` is ``%2B``).

    :raises ValueError: a naive datetime.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"datetime {instant.isoformat()} has no timezone; Acumatica filters need instants")
    return instant.astimezone(UTC).isoformat(timespec="milliseconds")


def shipments_filter(start: datetime, end: datetime, *, statuses: Sequence[str]) -> str:
    """OData v3 ``$filter`` for shipments in ``statuses`` modified in ``[start, end)``.

    Acumatica compares DateTimes only as ``datetimeoffset'...'`` literals; the hook sends the filter as a
    query parameter, so it is URL-encoded (``+`` -> ``%2B``, ``:`` -> ``%3A``) on the way out.

    :raises ValueError: a naive datetime, ``start`` not before ``end``, or no status.
    """
    low, high = format_datetimeoffset(start), format_datetimeoffset(end)  # refuses naive datetimes first
    if start >= end:
        raise ValueError(f"empty interval: start {start.isoformat()} is not before end {end.isoformat()}")
    if not statuses:
        raise ValueError("no shipment status to extract")
    status = " or ".join(f"Status eq '{s}'" for s in statuses)
    if len(statuses) > 1:
        status = f"({status})"
    return (f"{status} and LastModifiedDateTime ge datetimeoffset'{low}' "
            f"and LastModifiedDateTime lt datetimeoffset'{high}'")


# ---------------------------------------------------------------------------------------- extraction


def sales_order_filter(order_type: str, order_nbr: str) -> str:
    """``$filter`` for one sales order by its keys (quotes doubled, as OData text literals want)."""
    def literal(raw: str) -> str:
        return "'" + raw.replace("'", "''") + "'"
    return f"OrderType eq {literal(order_type)} and OrderNbr eq {literal(order_nbr)}"


def shipment_numbers(payload: dict[str, Any], key_field: str = "ShipmentNbr") -> list[str]:
    """The shipment numbers a push notification names (its ``Inserted`` rows' ``key_field``; updates arrive as
    a Deleted + Inserted pair, deletions alone name nothing to ship)."""
    numbers = []
    for row in payload.get("Inserted") or []:
        if isinstance(row, dict):
            raw = row.get(key_field)
            raw = raw.get("value") if isinstance(raw, dict) else raw
            if raw not in (None, "") and str(raw).strip() not in numbers:
                numbers.append(str(raw).strip())
    return numbers


def ready_to_ship(doc: Mapping[str, Any], *, statuses: Sequence[str], skip_on_hold: bool = True) -> str | None:
    """Why a shipment is not (yet) for a label, or None when it is: its ``Status`` is one of ``statuses``,
    it is not on ``Hold`` (when ``skip_on_hold``), and not every package row has a tracking number already
    (shipped by hand or by another integration)."""
    status = text(doc.get("Status"))
    if status not in statuses:
        return f"status {status!r} is not one of {', '.join(statuses)}"
    if skip_on_hold and value(doc.get("Hold")) is True:
        return "on hold"
    rows = doc.get("Packages") or []
    if rows and all(text(row.get("TrackingNbr")) for row in rows):
        return "every package has a tracking number already"
    return None


@dataclass(frozen=True)
class PackageRow:
    """One ``Packages`` row of a shipment with the canonical package it maps to.

    :param row_id: the row's ``id`` (write-back matches the row by it), None for the package weighed from the
        details of a shipment without package rows.
    """

    row_id: str | None
    package: Package
    tracking_number: str | None = None


def order_from_shipment(doc: Mapping[str, Any], *, default_weight_per_unit: Decimal | None = None,
                        item_weights: Mapping[str, Decimal] | None = None, weight_unit: WeightUnit = "LBS",
                        dimension_unit: Literal["IN", "CM"] = "IN",
                        ship_via_descriptions: Mapping[str, str] | None = None,
                        sales_orders: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                        stock_items: Mapping[str, Mapping[str, Any]] | None = None) -> Order:
    """Map one Shipment (read with ``$expand=`` :data:`SHIPMENT_EXPAND`) to an Order.

    :param default_weight_per_unit: weight of one unit of an item without an ``item_weights`` entry, used only
        for a shipment without package rows.
    :param item_weights: unit weight per ``InventoryID`` for the same case.
    :param weight_unit: unit of a weight whose row has no ``UOM``, and of the settings above.
    :param dimension_unit: unit of the package rows' ``Length``/``Width``/``Height`` (Acumatica keeps the linear
        unit at company level, not on the row).
    :param ship_via_descriptions: ``CarrierID`` -> ``Description`` of the Ship Via codes: the description is
        the carrier's second chance to resolve the service ("UPS 2nd Day Air").
    :param sales_orders: the shipment's sales orders by ``(OrderType, OrderNbr)``, read with
        :data:`SALES_ORDER_SELECT` (see the module's customs values); none: the lines carry no value.
    :param stock_items: ``StockItem`` records by upper-cased ``InventoryID``, read with :data:`STOCK_ITEM_SELECT`.
    :raises RecordError: the ship-to address is incomplete (the message names the Acumatica field).
    :raises MissingWeight: a package row without a weight, or no package rows and no weight from the details.
    """
    number = shipment_number(doc)
    ship_to = _ship_to(doc, number)
    rows = package_rows(doc, default_weight_per_unit=default_weight_per_unit, item_weights=item_weights,
                        weight_unit=weight_unit, dimension_unit=dimension_unit)
    return Order(
        erp=ERP_NAME,
        erp_id=str(doc.get("id") or number),
        number=number,
        ship_method=text(doc.get("ShipVia")),
        ship_method_description=(ship_via_descriptions or {}).get(text(doc.get("ShipVia")) or ""),
        ship_to=ship_to,
        packages=[row.package for row in rows],
        lines=_order_lines(doc, number, sales_orders=sales_orders, stock_items=stock_items),
        modified_at=parse_datetime(doc.get("LastModifiedDateTime")),
        customer_reference=sales_order_number(doc),
    )


def shipment_number(doc: Mapping[str, Any]) -> str:
    """The ``ShipmentNbr`` (else the record id) of a shipment."""
    return text(doc.get("ShipmentNbr")) or str(doc.get("id") or "<no number>")


def sales_order_number(doc: Mapping[str, Any]) -> str | None:
    """The sales order number of a shipment: ``OrderNbr`` of its first ``Orders`` row (a shipment of several
    orders prints the first; the shipment number identifies it anyway)."""
    for row in doc.get("Orders") or []:
        nbr = text(row.get("OrderNbr"))
        if nbr:
            return nbr
    return None


def sales_order_keys(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(OrderType, OrderNbr)`` of every sales order in the shipment's ``Orders``, in order, once each."""
    keys = []
    for row in doc.get("Orders") or []:
        order_type, nbr = text(row.get("OrderType")), text(row.get("OrderNbr"))
        if order_type and nbr and (order_type, nbr) not in keys:
            keys.append((order_type, nbr))
    return keys


def item_ids(doc: Mapping[str, Any]) -> list[str]:
    """The distinct ``InventoryID`` values of the shipment's ``Details``, upper-cased, in order."""
    return list(dict.fromkeys(sku.upper() for row in doc.get("Details") or []
                              if (sku := text(row.get("InventoryID")))))


def ship_to_country(doc: Mapping[str, Any]) -> str | None:
    """The ship-to country as the shipment holds it (upper-cased; None when not read or empty)."""
    settings = doc.get("ShippingSettings")
    address = settings.get("ShipToAddress") if isinstance(settings, Mapping) else None
    country = text((address or {}).get("Country")) if isinstance(address, Mapping) else None
    return country.upper() if country else None


def package_rows(doc: Mapping[str, Any], *, default_weight_per_unit: Decimal | None = None,
                 item_weights: Mapping[str, Decimal] | None = None, weight_unit: WeightUnit = "LBS",
                 dimension_unit: Literal["IN", "CM"] = "IN") -> list[PackageRow]:
    """The shipment's packages in ``Packages`` order (see the module's weight rule).

    :raises RecordError: ``Packages`` was not expanded.
    :raises MissingWeight: see :func:`order_from_shipment`.
    """
    number = shipment_number(doc)
    if "Packages" not in doc:
        raise RecordError("Packages missing: read the shipment with $expand=Packages", record=number,
                          field="Packages")
    rows = doc.get("Packages") or []
    if not rows:
        weight = _weight_from_details(doc, number, default_weight_per_unit, item_weights)
        return [PackageRow(None, Package(weight=weight, weight_unit=weight_unit))]
    result = []
    for index, row in enumerate(rows, start=1):
        label = text(row.get("BoxID")) or f"#{index}"
        weight = _decimal(value(row.get("Weight")), record=number, field="Packages/Weight")
        if weight is None or weight <= 0:
            raise MissingWeight(
                f"package {label} has no weight (Packages/Weight is {shown(value(row.get('Weight')))}); enter the "
                "package weight on the shipment's Packages tab", record=number, field="Packages/Weight")
        unit = _WEIGHT_UNITS.get((text(row.get("UOM")) or "").upper(), weight_unit)
        dims = [_decimal(value(row.get(f)), record=number, field=f"Packages/{f}") for f in ("Length", "Width",
                                                                                               "Height")]
        dimensions = None
        if all(d is not None and d > 0 for d in dims):
            dimensions = Dimensions(length=dims[0], width=dims[1], height=dims[2], unit=dimension_unit)
        description = text(row.get("Description")) or text(row.get("BoxID"))
        result.append(PackageRow(str(row.get("id")) if row.get("id") else None,
                                 Package(weight=weight, weight_unit=unit, dimensions=dimensions,
                                         description=description),
                                 text(row.get("TrackingNbr"))))
    return result


def ship_from_warehouse(doc: Mapping[str, Any]) -> str | None:
    """The shipment's ``WarehouseID`` (informational)."""
    return text(doc.get("WarehouseID"))


def _ship_to(doc: Mapping[str, Any], number: str) -> Address:
    settings = doc.get("ShippingSettings")
    if not isinstance(settings, Mapping) or "ShipToAddress" not in settings:
        raise RecordError("ShippingSettings/ShipToAddress missing: read the shipment with "
                          "$expand=ShippingSettings/ShipToAddress", record=number, field="ShippingSettings")
    address = settings.get("ShipToAddress") or {}
    contact = settings.get("ShipToContact") or {}
    country = (text(address.get("Country")) or "").upper()
    if not country:
        raise RecordError("ship-to address has no country (ShipToAddress/Country is empty)", record=number,
                          field="ShipToAddress/Country")
    if iso_country(country) is None:
        raise RecordError(f"ship-to country {shown(country)} is not an ISO 3166 two-letter country code",
                          record=number, field="ShipToAddress/Country")
    street = [line for line in (text(address.get("AddressLine1")), text(address.get("AddressLine2"))) if line]
    if not street:
        raise RecordError("ship-to address has no street (ShipToAddress/AddressLine1 is empty)", record=number,
                          field="ShipToAddress/AddressLine1")
    city = text(address.get("City"))
    if not city:
        raise RecordError("ship-to address has no city (ShipToAddress/City is empty)", record=number,
                          field="ShipToAddress/City")
    attention = text(contact.get("Attention"))
    name = text(contact.get("BusinessName")) or attention
    if not name:
        raise RecordError("ship-to contact has no name (ShipToContact/BusinessName and Attention are empty)",
                          record=number, field="ShipToContact/BusinessName")
    residential = value(doc.get("ResidentialDelivery"))
    # whether the carrier delivers there (postal code, state, PO boxes) is the carrier's rule
    return Address(
        name=name, attention=attention if attention != name else None, phone=text(contact.get("Phone1")),
        email=text(contact.get("Email")), lines=street, city=city, state=text(address.get("State")),
        postal_code=text(address.get("PostalCode")), country=country,
        residential=True if residential is True else None,
    )


def _order_lines(doc: Mapping[str, Any], number: str, *,
                 sales_orders: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                 stock_items: Mapping[str, Mapping[str, Any]] | None = None) -> list[OrderLine]:
    prices = _sales_order_prices(doc, number, sales_orders or {})
    items = {str(k).strip().upper(): v for k, v in (stock_items or {}).items()}
    lines = []
    for row in doc.get("Details") or []:
        sku = text(row.get("InventoryID"))
        quantity = _decimal(value(row.get("ShippedQty")), record=number, field="Details/ShippedQty")
        if not (sku and quantity and quantity > 0):
            continue
        sku = sku.upper()
        key = (text(row.get("OrderType")), text(row.get("OrderNbr")), _line_nbr(row.get("OrderLineNbr")))
        unit_value, currency = prices.get(key) or prices.get(sku) or (None, None)
        item = items.get(sku) or {}
        origin = text(item.get("CountryOfOrigin"))
        tariff = "".join((text(item.get("TariffCode")) or "").replace(".", " ").split())
        lines.append(OrderLine(sku=sku, description=text(row.get("Description")), quantity=quantity,
                               unit_value=unit_value, currency=currency,
                               origin_country=origin.upper() if origin else None, hs_code=tariff or None))
    return lines


def _line_nbr(field: Any) -> int | None:
    raw = value(field)
    try:
        return int(raw) if raw is not None and raw != "" else None
    except (TypeError, ValueError):
        return None


def _sales_order_prices(doc: Mapping[str, Any], number: str, sales_orders: Mapping[tuple[str, str], Mapping[str, Any]]
                        ) -> dict[Any, tuple[Decimal | None, str | None]]:
    """``(OrderType, OrderNbr, LineNbr)`` -> (unit price or None, currency) of every sales order line, and
    ``InventoryID`` -> the first priced line of that item (for shipment lines without an order line number)."""
    prices: dict[Any, tuple[Decimal | None, str | None]] = {}
    for key in sales_order_keys(doc):
        so = sales_orders.get(key)
        if not so:
            continue
        currency = text(so.get("CurrencyID"))
        for line in so.get("Details") or []:
            price = _decimal(value(line.get("UnitPrice")), record=number, field="SalesOrder Details/UnitPrice")
            entry = (price, currency.upper() if currency else None)
            prices[(key[0], key[1], _line_nbr(line.get("LineNbr")))] = entry  # a line without a price: None
            sku = text(line.get("InventoryID"))
            if sku and price is not None:
                prices.setdefault(sku.upper(), entry)
    return prices


def _weight_from_details(doc: Mapping[str, Any], number: str, default_weight_per_unit: Decimal | None,
                         item_weights: Mapping[str, Decimal] | None) -> Decimal:
    configured = {str(k).strip().upper(): Decimal(str(v)) for k, v in (item_weights or {}).items()}
    total, missing = Decimal(0), []
    for line in _order_lines(doc, number):
        unit = configured.get(line.sku) or default_weight_per_unit
        if unit is None or unit <= 0:
            missing.append(line.sku)
            continue
        total += unit * line.quantity
    if missing or total <= 0:
        items = f" (items without a weight: {', '.join(missing)})" if missing else ""
        raise MissingWeight(f"the shipment has no package rows and no weight from its details{items}; add a "
                            "package with its weight on the Packages tab, or set the pipeline's item_weights or "
                            "default_weight_per_unit", record=number, field="Packages/Weight")
    return total


def _decimal(raw: Any, *, record: str, field: str) -> Decimal | None:
    if raw is None or raw == "":
        return None
    try:
        return Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise RecordError(f"{field} {shown(raw)} is not a number", record=record, field=field) from None


# -------------------------------------------------------------------------------------------- write-back


def tracking_put(doc: Mapping[str, Any], tracking_numbers: Sequence[str]) -> dict[str, Any] | None:
    """The ``PUT .../Shipment?$expand=Packages`` body that sets ``TrackingNbr`` on each package row (matched
    by its ``id``: a row sent without ``id`` would be inserted as a new package), or None when the shipment
    already holds these values (a replay sends nothing).

    :param doc: the shipment as read now (with ``Packages``); its package rows, in order, get the numbers in
        order (one label per package).
    :param tracking_numbers: one per package, in the order the packages were extracted.
    :raises RecordError: the shipment's package rows no longer match the labels bought (rows added or
        removed since), or a tracking number does not fit.
    """
    number = shipment_number(doc)
    rows = [row for row in doc.get("Packages") or []]
    if not rows:
        raise RecordError("the shipment has no package row to hold the tracking number; add a package on the "
                          "Packages tab (the label was bought for the weight from the details)",
                          record=number, field="Packages")
    if len(rows) != len(tracking_numbers):
        raise RecordError(f"the shipment has {len(rows)} package row(s) but {len(tracking_numbers)} label(s) were "
                          "bought for it; its packages changed after the labels were bought. Put the tracking "
                          f"numbers {', '.join(tracking_numbers)} on the packages by hand",
                          record=number, field="Packages")
    changes: list[dict[str, Any]] = []
    for row, tracking in zip(rows, tracking_numbers, strict=True):
        tracking = (tracking or "").strip()
        if not tracking or len(tracking) > TRACKING_NBR_MAX:
            raise RecordError(f"tracking number {shown(tracking)} does not fit Packages/TrackingNbr",
                              record=number, field="Packages/TrackingNbr")
        if not row.get("id"):
            raise RecordError("a package row has no id (read it with $expand=Packages)", record=number,
                              field="Packages/id")
        if text(row.get("TrackingNbr")) != tracking:
            changes.append({"id": row["id"], "TrackingNbr": wrap(tracking)})
    if not changes:
        return None
    return {"id": doc.get("id"), "ShipmentNbr": wrap(number), "Packages": changes}


def freight_put(doc: Mapping[str, Any], amount: Decimal) -> dict[str, Any] | None:
    """The ``PUT .../Shipment`` body that sets ``FreightCost`` to ``amount``, or None when it holds it already."""
    number = shipment_number(doc)
    if _decimal(value(doc.get("FreightCost")), record=number, field="FreightCost") == amount:
        return None
    return {"id": doc.get("id"), "ShipmentNbr": wrap(number), "FreightCost": wrap(float(amount))}


def status_line(tracking: TrackingResult) -> str:
    """The one line ml-connector keeps in the shipment's note: status, last scan, delivery time, signature."""
    parts = [f"{NOTE_PREFIX} {tracking.tracking_number}: {tracking.status.value}"]
    if tracking.events and tracking.events[0].description:
        event = " ".join(tracking.events[0].description.split())
        where = f" ({tracking.events[0].location})" if tracking.events[0].location else ""
        parts.append(f"last scan {event}{where}")
    if tracking.delivered_at:
        parts.append(f"delivered {tracking.delivered_at.astimezone(UTC).isoformat(timespec='seconds')}")
    if tracking.received_by:
        parts.append(f"signed by {tracking.received_by}")
    return "; ".join(parts)


def note_with_status(note: str | None, line: str, tracking_number: str) -> str:
    """``note`` with ml-connector's line for ``tracking_number`` replaced (or appended): the rest of the note,
    which people write, is kept as it is."""
    prefix = f"{NOTE_PREFIX} {tracking_number}:"
    kept = [ln for ln in (note or "").splitlines() if not ln.startswith(prefix)]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join([*kept, line])


def status_values(tracking: TrackingResult) -> dict[str, str | None]:
    """What the ``status_custom_fields`` setting can name: ``status``, ``last_event``, ``delivered_at``,
    ``received_by``."""
    last = tracking.events[0].description if tracking.events else None
    return {
        "status": tracking.status.value,
        "last_event": " ".join(last.split())[:255] if last else None,
        "delivered_at": tracking.delivered_at.astimezone(UTC).isoformat(timespec="seconds")
        if tracking.delivered_at else None,
        "received_by": tracking.received_by,
    }


def status_put(doc: Mapping[str, Any], tracking: TrackingResult, *, write_note: bool,
               custom_fields: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``PUT .../Shipment`` body that reflects ``tracking`` on the shipment, or None when nothing changed.

    :param doc: the shipment as read now (with ``note`` and the custom fields named in ``custom_fields``).
    :param write_note: keep ml-connector's status line in the shipment's ``note``.
    :param custom_fields: value name (see :func:`status_values`) -> ``View.Field`` of a custom field
        (``Document.UsrUPSStatus``), written as Acumatica's ``custom`` block.
    """
    body: dict[str, Any] = {}
    if write_note:
        current = value(doc.get("note"))
        wanted = note_with_status(current if isinstance(current, str) else None, status_line(tracking),
                                  tracking.tracking_number)
        if wanted != current:
            body["note"] = wrap(wanted)
    values = status_values(tracking)
    custom: dict[str, dict[str, Any]] = {}
    for name, target in custom_fields.items():
        wanted_value = values.get(name)
        if wanted_value is None:
            continue
        view, _, field = target.partition(".")
        current = value(((doc.get("custom") or {}).get(view) or {}).get(field))
        if current != wanted_value:
            custom.setdefault(view, {})[field] = {"type": "CustomStringField", "value": wanted_value}
    if custom:
        body["custom"] = custom
    if not body:
        return None
    return {"id": doc.get("id"), "ShipmentNbr": wrap(shipment_number(doc)), **body}


def custom_select(custom_fields: Iterable[str]) -> str | None:
    """The ``$custom`` query value that reads the named custom fields back (``Document.UsrX,Document.UsrY``)."""
    names = sorted(set(custom_fields))
    return ",".join(names) or None
