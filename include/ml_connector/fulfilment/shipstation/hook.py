"""ShipStation hook: v1 (orders, shipments, products, webhooks) with Basic auth, v2 (labels) with ``API-Key``, and
the v1 call budget every task and worker share through the ledger.

Auth: v1 ``https://ssapi.shipstation.com`` takes ``Authorization: Basic base64(api_key:api_secret)`` (connection
login/password); v2 ``https://api.shipstation.com/v2`` takes the ``API-Key`` header (extra ``v2_api_key``).

Rate limit: v1 allows 40 requests a minute per API key, shared with every other integration using the same key,
and announces ``X-Rate-Limit-Limit``/``-Remaining``/``-Reset`` (seconds until the window resets) on every answer.
Each call first takes a slot from the budget row ``shipstation:<host>:<api key>`` in the ledger
(:mod:`ml_connector.ledger.rate_budget`): while the last headers are current their remaining count is spent,
otherwise a window of ``calls_per_minute`` x ``rate_share`` calls is counted locally. ``rate_share`` (default
1.0; e.g. 0.5 when another integration uses the same key) keeps the rest of the minute for others. A normal run
therefore sees no 429; a 429 still waits for its ``X-Rate-Limit-Reset`` and retries.

Connection ``shipstation_default`` (type ``shipstation``): host = v1 base URL (default
``https://ssapi.shipstation.com``), login/password = API Key / API Secret, extras ``v2_url`` (default
``https://api.shipstation.com``), ``v2_api_key`` (sensitive), ``webhook_token`` (the secret in the webhook URL;
sensitive), ``calls_per_minute`` (40), ``rate_share`` (1.0), and the transport extras of
:class:`~ml_connector.hooks.base.ConnectorHook`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import requests

from ml_connector import http
from ml_connector.errors import ApiError, ConfigurationError, RetryableApiError, api_error
from ml_connector.fulfilment.shipstation import mapping
from ml_connector.hooks.auth import ApiKeyAuth, AuthStyle, BasicAuth
from ml_connector.hooks.base import CHECK_RETRY, ConnectorHook
from ml_connector.ledger import rate_budget

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://ssapi.shipstation.com"
DEFAULT_V2_URL = "https://api.shipstation.com"
#: [3P] 40 requests a minute per API key and secret: extra ``calls_per_minute``
CALLS_PER_MINUTE = 40
PAGE_SIZE = 500
#: two announced resets closer than this are one window (``X-Rate-Limit-Reset`` counts whole seconds)
SAME_WINDOW = 2.0


def error_message(body: Any) -> str | None:
    """ShipStation's error text (v1: ``{"Message": ..., "ExceptionMessage": ...}``; v2: ``{"errors": [...]}``)."""
    if isinstance(body, dict):
        for key in ("ExceptionMessage", "Message", "message"):
            if body.get(key):
                return str(body[key])[:300]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0])[:300]
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return None


class ShipStationHook(ConnectorHook):
    """Talks to ShipStation v1 (Basic) and v2 (API-Key) within the ledger-held v1 call budget.

    :param shipstation_conn_id: the Airflow connection id.
    :param sleep: how to wait (tests pass a fake).
    :param clock: epoch seconds now (tests pass a fake).
    :param kwargs: :class:`~ml_connector.hooks.base.ConnectorHook` options (``ledger``, ``retry``, ``timeout``...).
    """

    conn_name_attr = "shipstation_conn_id"
    default_conn_name = "shipstation_default"
    conn_type = "shipstation"
    hook_name = "ShipStation"
    vendor = "shipstation"
    default_host = DEFAULT_HOST

    def __init__(self, shipstation_conn_id: str = default_conn_name, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(shipstation_conn_id, **kwargs)
        self.shipstation_conn_id = shipstation_conn_id
        self.sleep = sleep
        self.now = clock
        self.calls = 0
        self.waited = 0.0
        self.rate_limited = 0

    # -- configuration -------------------------------------------------------------------------------------

    def build_auth(self) -> AuthStyle:
        key, secret = self.credentials()
        return BasicAuth(self.send, key, secret)

    @cached_property
    def v2_auth(self) -> AuthStyle:
        key = str(self.extra("v2_api_key", required=True))
        http.mask(key)
        return ApiKeyAuth(self.send, key, header="API-Key")

    @property
    def v2_url(self) -> str:
        return str(self.extra("v2_url", DEFAULT_V2_URL)).rstrip("/")

    @property
    def budget_name(self) -> str:
        """The ledger row of this API key's v1 budget (the key is an account name, not the secret)."""
        key, _ = self.credentials()
        return f"shipstation:{self.base_url}:{key}"

    @property
    def per_minute(self) -> int:
        try:
            return int(self.extra("calls_per_minute", CALLS_PER_MINUTE))
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'calls_per_minute' must be a whole "
                                     "number") from None

    @property
    def reserve(self) -> int:
        """Slots a minute left to the key's other integrations: ``calls_per_minute`` x (1 - ``rate_share``)."""
        try:
            share = float(self.extra("rate_share", 1.0))
        except (TypeError, ValueError):
            share = -1.0
        if not 0 < share <= 1:
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'rate_share' must be a number in (0, 1]")
        return self.per_minute - max(1, math.floor(self.per_minute * share))

    def is_own_url(self, url: str) -> bool:
        """Whether ``url`` is on the configured v1 host (scheme, host and port): the only URLs a webhook's
        ``resource_url`` may make us call with the credentials."""
        try:
            a, b = urlsplit(url), urlsplit(self.base_url)
            return (a.scheme.lower(), a.hostname, a.port or {"https": 443, "http": 80}.get(a.scheme.lower())) == \
                   (b.scheme.lower(), b.hostname, b.port or {"https": 443, "http": 80}.get(b.scheme.lower()))
        except ValueError:
            return False

    # -- the budget ------------------------------------------------------------------------------------------

    @cached_property
    def _api_retry(self) -> http.RetryPolicy:
        # 429s are ours to wait out with the announced reset
        return dataclasses.replace(self.retry, statuses=self.retry.statuses - {429})

    def _take_slot(self) -> None:
        name, per_minute, reserve = self.budget_name, self.per_minute, self.reserve
        while True:
            slot = rate_budget.take_call(self.ledger, name, now=self.now(), per_minute=per_minute, reserve=reserve)
            if slot.wait <= 0:
                return
            self.waited += slot.wait
            self.sleep(min(slot.wait, 61.0))

    def _observe(self, response: requests.Response) -> tuple[int, float] | None:
        minute = mapping.rate_limit(response.headers, self.now())
        if minute is not None:
            # the reset is whole seconds from now: answers of one window differ by up to ~1 s
            rate_budget.observe(self.ledger, self.budget_name, minute=minute, same_window=SAME_WINDOW,
                                now=self.now())
        return minute

    def call(self, method: str, path_or_url: str, *, params: dict[str, Any] | None = None, json: Any = None,
             ok: tuple[int, ...] = (200, 201, 204), attempts: int = 4) -> Any:
        """One v1 call within the shared budget; a 429 waits for ``X-Rate-Limit-Reset`` (``attempts`` times).

        :raises ApiError: ShipStation's answer for anything but ``ok`` (401: AuthenticationError).
        """
        url = path_or_url if path_or_url.startswith("http") else f"{self.base_url}/{path_or_url.lstrip('/')}"
        for attempt in range(1, attempts + 1):
            self._take_slot()
            self.calls += 1
            response = self.send_authorized(method, url, params=params, json=json, retry=self._api_retry,
                                            headers={"Accept": "application/json"},
                                            idempotent=method in ("GET", "PUT", "DELETE"))
            minute = self._observe(response)
            if response.status_code == 429 and attempt < attempts:
                self.rate_limited += 1
                wait = max((minute[1] if minute else self.now() + 5) - self.now(), 0.05)
                if minute is None:
                    rate_budget.observe(self.ledger, self.budget_name, minute=(0, self.now() + wait))
                log.warning("ShipStation answered 429: waiting %.1f s for the announced reset", wait)
                self.waited += wait
                self.sleep(wait)
                continue
            break
        body = http.json_or_text(response) if response.content else None
        if response.status_code not in ok:
            if response.status_code == 429:
                raise RetryableApiError("ShipStation kept answering 429 (rate limit)", vendor=self.vendor,
                                        status=429)
            raise api_error(error_message(body) or response.reason or f"HTTP {response.status_code}",
                            vendor=self.vendor, status=response.status_code)
        return body

    def _pages(self, path: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page, pages = 1, 1
        while page <= pages:
            body = self.call("GET", path, params={**params, "page": page, "pageSize": PAGE_SIZE})
            yield from (body or {}).get(key) or []
            pages = int((body or {}).get("pages") or 1)
            page += 1

    # -- v1 reads ----------------------------------------------------------------------------------------------

    def iter_orders(self, start: datetime, end: datetime, *, status: str | None = None) -> Iterator[dict[str, Any]]:
        """Orders modified in the UTC window ``[start, end)`` (sent as Pacific clock times, read back under both
        readings of a repeated hour), optionally of one ``orderStatus``."""
        low, high = mapping.pacific_window(start, end)
        params: dict[str, Any] = {"modifyDateStart": low, "modifyDateEnd": high, "sortBy": "ModifyDate"}
        if status:
            params["orderStatus"] = status
        for order in self._pages("orders", "orders", params):
            if not order.get("modifyDate") or mapping.in_window(order["modifyDate"], start, end):
                yield order

    def iter_shipments(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Label shipments created in ``[start, end)`` with their items."""
        low, high = mapping.pacific_window(start, end)
        for shipment in self._pages("shipments", "shipments", {"createDateStart": low, "createDateEnd": high,
                                                               "includeShipmentItems": "true"}):
            if not shipment.get("createDate") or mapping.in_window(shipment["createDate"], start, end):
                yield shipment

    def get_order(self, order_id: int | str) -> dict[str, Any]:
        return self.call("GET", f"orders/{int(order_id)}")

    def shipments_of(self, order_id: int | str) -> list[dict[str, Any]]:
        """The order's label shipments, newest last (voided ones left out)."""
        shipments = list(self._pages("shipments", "shipments", {"orderId": int(order_id),
                                                                "includeShipmentItems": "true"}))
        return [s for s in shipments if not s.get("voided")]

    def follow(self, resource_url: str) -> dict[str, Any]:
        """GET a webhook's ``resource_url`` (only on the configured host; ``includeShipmentItems`` forced true).

        :raises ConfigurationError: the URL is on another host (never called with the credentials).
        """
        if not self.is_own_url(resource_url):
            raise ConfigurationError(f"resource_url {http.safe_url(resource_url)} is not on the configured "
                                     f"ShipStation host {self.base_url}: not followed")
        parts = urlsplit(resource_url)
        query = [p for p in parts.query.split("&") if p and not p.lower().startswith("includeshipmentitems=")]
        if "/shipments" in parts.path.lower():
            query.append("includeShipmentItems=True")
        url = parts._replace(query="&".join(query)).geturl()
        return self.call("GET", url) or {}

    def products_by_sku(self, sku: str) -> list[dict[str, Any]]:
        body = self.call("GET", "products", params={"sku": sku, "showInactive": "true", "pageSize": PAGE_SIZE})
        return list((body or {}).get("products") or [])

    def iter_customers(self) -> Iterator[dict[str, Any]]:
        """Every customer ShipStation keeps (``GET /customers``, 500 a page). v1 only reads customers: it has no
        call that creates or updates one; ShipStation makes them from imported orders."""
        yield from self._pages("customers", "customers", {"sortBy": "ModifyDate", "sortDir": "DESC"})

    def update_product(self, product: dict[str, Any]) -> Any:
        """PUT the full product (v1 has no partial update)."""
        return self.call("PUT", f"products/{int(product['productId'])}", json=product)

    # -- webhooks ----------------------------------------------------------------------------------------------

    def list_webhooks(self) -> list[dict[str, Any]]:
        body = self.call("GET", "webhooks")
        return list((body or {}).get("webhooks") or [])

    def subscribe(self, target_url: str, event: str, *, friendly_name: str = "ml-connector") -> Any:
        """``POST /webhooks/subscribe``; answers ``{"id": ...}`` (older docs) or ``{"WebHookID": ...}``."""
        body = self.call("POST", "webhooks/subscribe", json={"target_url": target_url, "event": event,
                                                              "store_id": None, "friendly_name": friendly_name})
        return (body or {}).get("id") or (body or {}).get("WebHookID")

    def unsubscribe(self, webhook_id: int | str) -> None:
        self.call("DELETE", f"webhooks/{int(webhook_id)}")

    # -- v2 ----------------------------------------------------------------------------------------------------

    def create_label(self, shipment: dict[str, Any], **options: Any) -> dict[str, Any]:
        """``POST /v2/labels`` with an inline shipment (``API-Key`` header); answers the label (``tracking_number``).

        A label purchase is not idempotent: it is never retried blindly.
        """
        response = self.v2_auth.send("POST", f"{self.v2_url}/v2/labels", json={"shipment": shipment, **options},
                                     headers={"Accept": "application/json"}, idempotent=False)
        body = http.json_or_text(response) if response.content else None
        if response.status_code not in (200, 201):
            raise api_error(error_message(body) or f"HTTP {response.status_code}", vendor=self.vendor,
                            status=response.status_code)
        return body

    # -- Airflow UI --------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One ``GET /webhooks`` with the API key and secret (no budget slot: the Test button is one call)."""
        try:
            key, _ = self.credentials()
            response = self.send_authorized("GET", f"{self.base_url}/webhooks", retry=CHECK_RETRY,
                                            headers={"Accept": "application/json"})
            if response.status_code != 200:
                raise api_error(error_message(http.json_or_text(response)) or f"HTTP {response.status_code}",
                                vendor=self.vendor, status=response.status_code)
        except (ApiError, ConfigurationError) as exc:
            return False, self.check_failure_message(exc, label="ShipStation")
        return True, f"Connected to ShipStation at {self.base_url} with API key {key[:4]}..."
