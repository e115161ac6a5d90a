"""State of the ShipStation sandbox: knobs, counters, the per-key rate window, orders, shipments, products, webhooks."""

from __future__ import annotations

import copy
import itertools
import math
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from ml_connector_sandbox.common import SandboxState, VendorError

PACIFIC = ZoneInfo("America/Los_Angeles")

#: products the sandbox account holds (SKU = Business Central item number); the other BC items are missing
SEED_PRODUCTS = [
    {"sku": "1896-S", "name": "Athens desk", "price": 900.0},
    {"sku": "1900-S", "name": "PARIS Guest Chair, black", "price": 192.8},
    {"sku": "1908-S", "name": "London chair", "price": 150.0},
    {"sku": "1920-S", "name": "ANTWERP Conference Table", "price": 420.4},
    {"sku": "1928-S", "name": "AMSTERDAM Lamp", "price": 54.9},
]


def pacific_text(instant: datetime) -> str:
    """An instant as v1 writes it: Pacific clock time, 7 fraction digits, no offset."""
    local = instant.astimezone(PACIFIC)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond:06d}0"


def parse_pacific(text: str) -> datetime:
    """A v1 clock time (``2026-11-01 01:30:00`` or ``...T01:30:00.1234567``) as a naive local datetime."""
    value = text.strip().replace(" ", "T")
    if "." in value:
        head, _, fraction = value.partition(".")
        value = f"{head}.{fraction[:6].ljust(6, '0')}"
    return datetime.fromisoformat(value).replace(tzinfo=None)


class ShipStationState(SandboxState):
    """Knobs, counters and the account's records."""

    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.KNOB_DEFAULTS,
        "rate_limit_per_minute": 40,   # v1 requests per window per API key
        "rate_window_seconds": 60.0,   # the window (tests shorten it)
    }
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.COUNTER_DEFAULTS,
        "v1_requests": 0,
        "auth_failures": 0,
        "product_puts": 0,
        "labels_created": 0,
        "webhooks_sent": 0,
    }

    def reset_vendor_data(self) -> None:
        self._ids = itertools.count(1001)
        self.window_start: float | None = None
        self.window_calls = 0
        now = pacific_text(self.now())
        self.products: dict[int, dict[str, Any]] = {}
        for seed in SEED_PRODUCTS:
            pid = next(self._ids)
            self.products[pid] = {
                "productId": pid, "sku": seed["sku"], "name": seed["name"], "price": seed["price"],
                "defaultCost": None, "length": None, "width": None, "height": None, "weightOz": 16.0,
                "internalNotes": None, "fulfillmentSku": None, "createDate": now, "modifyDate": now,
                "active": True, "productCategory": None, "productType": None, "warehouseLocation": "A-1",
                "defaultCarrierCode": None, "defaultServiceCode": None, "defaultPackageCode": None,
                "defaultIntlCarrierCode": None, "defaultIntlServiceCode": None, "defaultIntlPackageCode": None,
                "defaultConfirmation": None, "defaultIntlConfirmation": None, "customsDescription": None,
                "customsValue": None, "customsTariffNo": None, "customsCountryCode": None, "noCustoms": None,
                "tags": None}
        self.orders: dict[int, dict[str, Any]] = {}
        self.shipments: dict[int, dict[str, Any]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.batches: dict[str, list[int]] = {}  # importBatch / batchId -> order or shipment ids
        self.labels: dict[str, dict[str, Any]] = {}
        self.customers: dict[int, dict[str, Any]] = {}  # made from imported orders (v1 cannot create them)
        self.order_queries: list[dict[str, str]] = []  # filters of each v1 GET /orders (control ``order_queries``)

    def next_id(self) -> int:
        return next(self._ids)

    def is_api_path(self, path: str) -> bool:
        return not path.startswith("/_sandbox")

    def rate_limit_error(self) -> VendorError:
        return VendorError(429, {"Message": "Too Many Requests"}, self.rate_headers(0))

    # -- the per-key window ------------------------------------------------------------------------------
    def rate_headers(self, remaining: int) -> dict[str, str]:
        window = float(self.knobs["rate_window_seconds"])
        now = self.now().timestamp()
        start = self.window_start if self.window_start is not None else now
        reset = max(0, math.ceil(start + window - now))  # whole seconds, never early
        return {"X-Rate-Limit-Limit": str(self.knobs["rate_limit_per_minute"]),
                "X-Rate-Limit-Remaining": str(max(remaining, 0)), "X-Rate-Limit-Reset": str(reset)}

    def take_call(self) -> tuple[bool, dict[str, str]]:
        """Count one v1 request in the window: ``(allowed, rate headers)``."""
        with self.lock:
            now = self.now().timestamp()
            window = float(self.knobs["rate_window_seconds"])
            if self.window_start is None or now - self.window_start >= window:
                self.window_start, self.window_calls = now, 0
            limit = int(self.knobs["rate_limit_per_minute"])
            if self.window_calls >= limit:
                self.counters["rate_limited"] += 1
                return False, self.rate_headers(0)
            self.window_calls += 1
            self.counters["v1_requests"] += 1
            return True, self.rate_headers(limit - self.window_calls)

    # -- orders ------------------------------------------------------------------------------------------
    def save_order(self, body: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
        """Create or update (by ``orderKey``) an order: the whole object is replaced (no partial update)."""
        with self.lock:
            stamp = pacific_text(at or self.now())
            existing = next((o for o in self.orders.values()
                             if body.get("orderKey") and o.get("orderKey") == body["orderKey"]), None)
            order = copy.deepcopy(body)
            if existing is not None:
                order["orderId"] = existing["orderId"]
                order["createDate"] = existing["createDate"]
            else:
                order["orderId"] = self.next_id()
                order["createDate"] = stamp
                order.setdefault("orderKey", f"ss-{order['orderId']}")
            order["modifyDate"] = stamp
            order.setdefault("orderDate", stamp)
            order.setdefault("orderStatus", "awaiting_shipment")
            for index, item in enumerate(order.get("items") or [], start=1):
                item.setdefault("orderItemId", order["orderId"] * 100 + index)
            self.orders[order["orderId"]] = order
            self.remember_customer(order, stamp)
            return copy.deepcopy(order)

    def remember_customer(self, order: dict[str, Any], stamp: str) -> None:
        """ShipStation keeps a customer for the buyer of each imported order (by username or email), with the
        ship-to address of the order; the API can only read them (``GET /customers``, ``/customers/{id}``)."""
        username = str(order.get("customerUsername") or "").strip()
        email = str(order.get("customerEmail") or "").strip()
        if not username and not email:
            return
        ship_to = order.get("shipTo") or {}
        customer = next((c for c in self.customers.values()
                         if (username and username in [u["username"] for u in c["marketplaceUsernames"]])
                         or (email and c.get("email", "").lower() == email.lower())), None)
        if customer is None:
            cid = self.next_id()
            customer = {"customerId": cid, "createDate": stamp, "marketplaceUsernames": [], "tags": None}
            self.customers[cid] = customer
        customer.update(modifyDate=stamp, name=ship_to.get("name"), company=ship_to.get("company"),
                        street1=ship_to.get("street1"), street2=ship_to.get("street2"), city=ship_to.get("city"),
                        state=ship_to.get("state"), postalCode=ship_to.get("postalCode"),
                        countryCode=ship_to.get("country"), phone=ship_to.get("phone"), email=email or None,
                        addressVerified="Address not yet validated")
        if username and username not in [u["username"] for u in customer["marketplaceUsernames"]]:
            customer["marketplaceUsernames"].append({
                "customerUserId": self.next_id(), "customerId": customer["customerId"], "createDate": stamp,
                "modifyDate": stamp, "marketplaceId": 0, "marketplace": "ShipStation", "username": username})

    def batch(self, ids: list[int]) -> str:
        with self.lock:
            name = str(self.next_id())
            self.batches[name] = list(ids)
            return name
