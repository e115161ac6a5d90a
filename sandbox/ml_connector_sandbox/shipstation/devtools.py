"""``make demo`` / ``make run`` helper for the ShipStation sandbox (found by convention by
``ml_connector_sandbox.devtools``).

The ShipStation sandbox starts empty (a real account's orders come from its stores), so :func:`place_released`
imports the demo orders through the control endpoints, each modified just before ``interval_end``: two shipped
with a label (SHIP_NOTIFY), one marked shipped outside label creation (found only by
``/orders?orderStatus=shipped``), one open (a draft document), one naming a customer Business Central does not
know (a record error: the run turns red, as in the ERP -> UPS demos). ``KEEP_IN_PLACE`` orders are imported
3 days old: no run of the interval sees them. With ``erp_url`` (the Business Central sandbox) two items and two
customers are touched into the interval too, so ``push_items`` updates a product and reports a missing SKU and
a customer ShipStation does not know. ``createorder`` is create-or-update by ``orderKey`` and shipped orders are
not shipped again, so placing twice books nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import requests

from ml_connector_sandbox.shipstation.state import pacific_text

CONTROL = "_sandbox/shipstation"
#: the demo order imported 3 days old (outside every interval a demo or first run covers)
KEEP_IN_PLACE = ("demo-ss-1006",)
_SHIP_TO = {"name": "Emily Carter", "street1": "14 Willow Brook Lane", "city": "Rye", "state": "NY",
            "postalCode": "10580", "country": "US"}
#: (orderKey, orderNumber, customerUsername, [(sku, quantity, price)], how it ships: label | external | None)
DEMO_ORDERS = [
    ("demo-ss-1001", "SS-1001", "10000", [("1896-S", 1, 1000.8)], "label"),
    ("demo-ss-1002", "SS-1002", "20000", [("1900-S", 4, 192.8), ("1928-S", 2, 54.9)], "label"),
    ("demo-ss-1003", "SS-1003", "30000", [("1920-S", 1, 420.4)], "external"),
    ("demo-ss-1004", "SS-1004", "10000", [("1908-S", 2, 150.0)], None),
    ("demo-ss-1005", "SS-1005", "77777", [("1900-S", 1, 192.8)], "label"),
    ("demo-ss-1006", "SS-1006", "10000", [("1896-S", 1, 1000.8)], "label"),
]
#: Business Central items and customers touched into the interval (with ``erp_url``): 1900-S is a ShipStation
#: product, 1968-S is not; customer 10000 buys in ShipStation, 40000 never did
DEMO_ITEMS = ("1900-S", "1968-S")
DEMO_CUSTOMERS = ("10000", "40000")


def place_released(url: str, interval_end: datetime, *, keep: tuple[str, ...] = KEEP_IN_PLACE,
                   erp_url: str | None = None) -> list[tuple[str, str]]:
    """Import (or re-import) the demo orders modified just before ``interval_end`` (``keep`` ones 3 days
    before) and ship them as :data:`DEMO_ORDERS` says; returns ``(order number, its modifyDate)`` of the orders
    placed in the interval."""
    url = url.rstrip("/")
    existing = {o["orderKey"]: o for o in _get(f"{url}/{CONTROL}/orders")}
    placed = []
    for i, (key, number, customer, lines, ships) in enumerate(DEMO_ORDERS):
        at = interval_end - (timedelta(days=3) if key in keep else timedelta(minutes=1, seconds=10 * i))
        order = existing.get(key)
        if order is None or order.get("orderStatus") != "shipped":
            order = _post(f"{url}/{CONTROL}/orders", {
                "orderKey": key, "orderNumber": number, "orderStatus": "awaiting_shipment",
                "customerUsername": customer, "orderDate": pacific_text(at), "shipTo": _SHIP_TO, "_modified_at":
                at.isoformat(), "items": [{"sku": sku, "quantity": qty, "unitPrice": price}
                                          for sku, qty, price in lines]})["order"]
            if ships:
                order = _post(f"{url}/{CONTROL}/orders/{order['orderId']}/ship",
                              {"_modified_at": at.isoformat(), "label": ships == "label"})["order"]
        else:  # shipped already: only its time moves (the booking stays one document)
            _post(f"{url}/{CONTROL}/touch", {"modified_at": at.isoformat(), "orderIds": [order["orderId"]]})
        if key not in keep:
            placed.append((number, at.isoformat()))
    if erp_url:
        at = (interval_end - timedelta(minutes=2)).isoformat()
        control = f"{erp_url.rstrip('/')}/_sandbox/business_central"
        _post(f"{control}/items/touch", {"numbers": list(DEMO_ITEMS), "modified_at": at})
        _post(f"{control}/customers/touch", {"numbers": list(DEMO_CUSTOMERS), "modified_at": at})
    return placed


def _get(url: str) -> list[dict]:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def _post(url: str, body: dict) -> dict:
    response = requests.post(url, json=body, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"sandbox refused {url}: {response.status_code} {response.text}")
    return response.json()
