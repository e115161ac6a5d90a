"""ShipStation <-> Business Central, pure: Pacific-time conversion, the rate-limit headers, product merge, and the
Business Central document an order becomes.

**Time.** ShipStation v1 reads and writes US Pacific clock times without an offset (``2026-11-01T01:30:00.0000000``).
Every timestamp is converted with :mod:`zoneinfo` (``America/Los_Angeles``) on the way in (:func:`from_pacific`)
and out (:func:`to_pacific`). Local clock times are not unique: in November the hour 01:00-02:00 happens twice
(first PDT, then PST), in March 02:00-03:00 does not exist. A single timestamp is read as its first occurrence
(``fold=0``, PDT) unless told otherwise; a window sent as ``modifyDateStart``/``modifyDateEnd``
(:func:`pacific_window`) covers every local clock time the UTC window covers, and a record read back belongs to
the UTC window when either reading of its clock time falls in it (:func:`in_window`): an order edited in the
repeated hour is never missed (at worst it is seen by two runs, and booking is idempotent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ml_connector.errors import RecordError

PACIFIC = ZoneInfo("America/Los_Angeles")
#: what v1 query parameters take (``modifyDateStart=2026-11-01 01:30:00``)
QUERY_FORMAT = "%Y-%m-%d %H:%M:%S"
_FRACTION = re.compile(r"\.(\d+)")
#: Business Central's External Document No. is Code[35]
EXTERNAL_DOCUMENT_MAX = 35
#: BC line description is Text[100]
DESCRIPTION_MAX = 100
#: v1 order statuses whose order can still change (a document for them stays a draft)
OPEN_STATUSES = frozenset({"awaiting_payment", "awaiting_shipment", "pending_fulfillment", "on_hold"})
SHIPPED = "shipped"


# -- time ----------------------------------------------------------------------------------------------------

def parse_local(text: str) -> datetime:
    """A v1 timestamp (``2015-08-17T09:21:59.4430000``, 7 fraction digits, no offset) as a naive datetime.

    :raises ValueError: not a timestamp.
    """
    value = str(text).strip().replace(" ", "T")
    match = _FRACTION.search(value)
    if match:
        value = value.replace(match.group(0), "." + match.group(1)[:6].ljust(6, "0"))
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:  # an offset after all: trust it
        return parsed.astimezone(PACIFIC).replace(tzinfo=None)
    return parsed


def from_pacific(text: str | datetime, *, fold: int = 0) -> datetime:
    """A v1 Pacific clock time as an aware UTC datetime. ``fold=0`` reads a repeated November time as its first
    occurrence (PDT), ``fold=1`` as its second (PST); a March time that does not exist is read with the offset
    before the change (PST)."""
    local = text if isinstance(text, datetime) else parse_local(text)
    return local.replace(tzinfo=PACIFIC, fold=fold).astimezone(UTC)


def readings(text: str | datetime) -> set[datetime]:
    """Every UTC instant a v1 clock time can mean (two in the repeated November hour, else one)."""
    return {from_pacific(text, fold=0), from_pacific(text, fold=1)}


def to_pacific(instant: datetime) -> datetime:
    """An aware instant as a naive Pacific clock time (``fold`` set for the second 01:xx in November)."""
    if instant.tzinfo is None:
        raise ValueError("to_pacific needs an aware datetime")
    return instant.astimezone(PACIFIC).replace(tzinfo=None, fold=instant.astimezone(PACIFIC).fold)


def to_pacific_text(instant: datetime) -> str:
    """An instant as a v1 query value (``2026-11-01 01:30:00``)."""
    return to_pacific(instant).strftime(QUERY_FORMAT)


def pacific_window(start: datetime, end: datetime, *, step: timedelta = timedelta(minutes=15)) -> tuple[str, str]:
    """``(modifyDateStart, modifyDateEnd)`` covering every Pacific clock time the UTC window ``[start, end)``
    covers. Across the November change the local clock runs back an hour, so the local start may be later than
    the local end of a window read naively: the window is widened to the lowest and highest local times."""
    points = [start]
    at = start
    while at < end:
        at = min(at + step, end)
        points.append(at)
    locals_ = [to_pacific(p).replace(fold=0) for p in points]
    # the instant just before a backward change is the highest local time, the one after it the lowest
    low, high = min(locals_), max(locals_)
    for before, after in zip(points, points[1:], strict=False):
        if _offset(after) != _offset(before):  # a DST change inside this step
            low = min(low, to_pacific(after).replace(fold=0) - (after - before))
            high = max(high, to_pacific(before).replace(fold=0) + (after - before))
    return low.strftime(QUERY_FORMAT), high.strftime(QUERY_FORMAT)


def _offset(instant: datetime) -> timedelta:
    return instant.astimezone(PACIFIC).utcoffset() or timedelta(0)


def in_window(text: str, start: datetime, end: datetime) -> bool:
    """Whether a v1 clock time falls in the UTC window ``[start, end)`` under either of its readings."""
    return any(start <= at < end for at in readings(text))


# -- rate limits -----------------------------------------------------------------------------------------------

#: ``X-Rate-Limit-Reset`` is in whole seconds: the window may end up to a second later than it says
RESET_MARGIN = 1.0


def rate_limit(headers: Mapping[str, str], now: float) -> tuple[int, float] | None:
    """``(remaining, reset epoch seconds)`` from ``X-Rate-Limit-Remaining`` / ``X-Rate-Limit-Reset`` (seconds
    until the window resets, plus :data:`RESET_MARGIN`), or None when absent or unreadable."""
    remaining, reset = headers.get("X-Rate-Limit-Remaining"), headers.get("X-Rate-Limit-Reset")
    try:
        return ((int(remaining), now + float(reset) + RESET_MARGIN)
                if remaining is not None and reset is not None else None)
    except ValueError:
        return None


# -- products --------------------------------------------------------------------------------------------------

def product_changes(item: Mapping[str, Any]) -> dict[str, Any]:
    """The product fields a Business Central item owns: name, price, cost, active."""
    return {"name": str(item.get("displayName") or item.get("number") or "")[:200],
            "price": float(item.get("unitPrice") or 0),
            "defaultCost": float(item.get("unitCost") or 0),
            "active": not bool(item.get("blocked"))}


def merge_product(product: Mapping[str, Any], item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The full product to PUT (v1 has no partial update: every field read is sent back), or None when the
    product already holds the item's values."""
    changes = product_changes(item)
    if all(product.get(k) == v for k, v in changes.items()):
        return None
    return {**product, **changes}


def find_sku(products: list[Mapping[str, Any]], sku: str) -> Mapping[str, Any] | None:
    """The product whose SKU is exactly ``sku`` (v1's ``sku`` filter matches more than that)."""
    return next((p for p in products if str(p.get("sku") or "") == sku), None)


# -- customers --------------------------------------------------------------------------------------------------

def customer_index(customers: list[Mapping[str, Any]]) -> set[str]:
    """What identifies the ShipStation customers: every ``marketplaceUsernames[].username`` and ``email``
    (lower case)."""
    known = set()
    for customer in customers:
        for name in customer.get("marketplaceUsernames") or []:
            if name.get("username"):
                known.add(str(name["username"]).strip().lower())
        if customer.get("email"):
            known.add(str(customer["email"]).strip().lower())
    return known


def knows_customer(index: set[str], customer: Mapping[str, Any]) -> bool:
    """Whether ShipStation knows the Business Central customer: its number is a ShipStation username (the orders
    carry it as ``customerUsername``) or its e-mail is a ShipStation customer's."""
    return any(str(customer.get(k) or "").strip().lower() in index for k in ("number", "email")
               if customer.get(k))


# -- Business Central item notifications --------------------------------------------------------------------

_ITEM_RESOURCE = re.compile(r"/items\(([^()/]+)\)$", re.IGNORECASE)


def notified_item(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """What a Business Central webhook notification (``resource``, ``changeType``) asks of the item push:
    ``("item", <item id>)`` for a created/updated item, ``("collection", None)`` when Business Central reports
    a ``collection`` change (too many to list: read the items modified since the notification's
    ``lastModifiedDateTime``), ``("deleted", <id>)``, or ``("other", None)`` for a resource that is no item."""
    resource = str(entry.get("resource") or "").rstrip("/")
    change = str(entry.get("changeType") or "").lower()
    match = _ITEM_RESOURCE.search(resource)
    if match:
        return ("deleted" if change == "deleted" else "item"), match.group(1).strip("'").lower()
    if change == "collection" and resource.lower().endswith("/items"):
        return "collection", None
    return "other", None


# -- orders -> Business Central --------------------------------------------------------------------------------

def order_key(order: Mapping[str, Any]) -> str:
    """The order's ``orderKey`` as Business Central's external document number.

    :raises RecordError: no key, or longer than Business Central's 35 characters.
    """
    key = str(order.get("orderKey") or "").strip()
    number = order.get("orderNumber") or order.get("orderId")
    if not key:
        raise RecordError(f"ShipStation order {number} has no orderKey", field="orderKey")
    if len(key) > EXTERNAL_DOCUMENT_MAX:
        raise RecordError(f"ShipStation order {number}: orderKey {key!r} is {len(key)} characters; Business "
                          f"Central's external document number holds at most {EXTERNAL_DOCUMENT_MAX}",
                          field="orderKey")
    return key


def tracking_line(shipment: Mapping[str, Any] | None, order: Mapping[str, Any]) -> str:
    """The comment line that carries tracking number, carrier and service onto the document (API v2.0 has no
    tracking field on sales documents; a comment line survives posting)."""
    if shipment:
        text = (f"Tracking {shipment.get('trackingNumber') or '-'} carrier {shipment.get('carrierCode') or '-'} "
                f"service {shipment.get('serviceCode') or '-'}")
    else:
        text = (f"Shipped outside ShipStation labels; carrier {order.get('carrierCode') or '-'} "
                f"service {order.get('serviceCode') or '-'}")
    return text[:DESCRIPTION_MAX]


def document_lines(order: Mapping[str, Any], items: Mapping[str, str]) -> list[dict[str, Any]]:
    """Item lines of the order (``items``: SKU -> Business Central item id).

    :raises RecordError: a line without SKU, or a SKU Business Central does not know (named).
    """
    lines = []
    for index, line in enumerate(order.get("items") or [], start=1):
        sku = str(line.get("sku") or "").strip()
        if not sku:
            raise RecordError(f"ShipStation order {order.get('orderNumber')}: line {index} has no SKU",
                              field=f"items[{index}].sku")
        if sku not in items:
            raise RecordError(f"ShipStation order {order.get('orderNumber')}: item {sku!r} is not in Business "
                              f"Central", field=f"items[{index}].sku")
        lines.append({"lineType": "Item", "itemId": items[sku], "quantity": float(line.get("quantity") or 0),
                      "unitPrice": float(Decimal(str(line.get("unitPrice") or 0)))})
    if not lines:
        raise RecordError(f"ShipStation order {order.get('orderNumber')} has no item lines", field="items")
    return lines


def customer_number(order: Mapping[str, Any], field: str) -> str:
    """The Business Central customer number the order names in ``field`` (``customerUsername`` by default).

    :raises RecordError: the field is empty.
    """
    value = str(order.get(field) or "").strip()
    if not value:
        raise RecordError(f"ShipStation order {order.get('orderNumber')} has no {field} (the Business Central "
                          f"customer number)", field=field)
    return value


def document_header(order: Mapping[str, Any], customer_id: str) -> dict[str, Any]:
    """Header fields of the document (external document number = ``orderKey``)."""
    ship_to = order.get("shipTo") or {}
    header = {"customerId": customer_id, "externalDocumentNumber": order_key(order)}
    if order.get("orderDate"):
        header["invoiceDate"] = from_pacific(order["orderDate"]).date().isoformat()
    for bc, ss in (("shipToName", "name"), ("shipToAddressLine1", "street1"), ("shipToAddressLine2", "street2"),
                   ("shipToCity", "city"), ("shipToState", "state"), ("shipToPostCode", "postalCode"),
                   ("shipToCountry", "country")):
        if ship_to.get(ss):
            header[bc] = str(ship_to[ss])
    return header


def same_lines(current: list[Mapping[str, Any]], wanted: list[Mapping[str, Any]]) -> bool:
    """Whether a draft's lines already are ``wanted`` (order and values)."""
    def key(line: Mapping[str, Any]) -> tuple:
        return (line.get("lineType"), str(line.get("itemId") or "").lower() if line.get("lineType") == "Item" else "",
                float(line.get("quantity") or 0), float(line.get("unitPrice") or 0),
                line.get("description", "") if line.get("lineType") == "Comment" else "")
    return [key(x) for x in current] == [key(x) for x in wanted]
