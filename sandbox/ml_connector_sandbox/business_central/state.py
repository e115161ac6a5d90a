"""State of the Business Central sandbox: knobs, counters, issued tokens and the company's records."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from ml_connector_sandbox.business_central.errors import TOO_MANY_REQUESTS, odata_error, record_not_found
from ml_connector_sandbox.business_central.odata import ms
from ml_connector_sandbox.business_central.seed import SEED_PATH, load_seed
from ml_connector_sandbox.common import SandboxState, VendorError


@dataclass
class IssuedToken:
    """A bearer token the sandbox handed out (opaque: clients must not parse it)."""

    tenant: str
    client_id: str
    expires_at: datetime


@dataclass
class StoredOrder:
    """One Sales Header of Document Type Order: its seed record plus what the API and the page change."""

    seed: dict[str, Any]
    status: str
    modified_at: datetime
    version: int
    package_tracking_no: str = ""
    shipping_agent_code: str = ""
    shipping_agent_service_code: str = ""
    ml_shipment_status: str = ""
    ml_last_tracking_event: str = ""
    ml_delivered_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.seed["id"]

    @property
    def number(self) -> str:
        return self.seed["number"]


class BusinessCentralState(SandboxState):
    """Knobs, counters, tokens and the company's records of the Business Central sandbox."""

    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.KNOB_DEFAULTS,
        "token_ttl_seconds": 3599,     # expires_in of new tokens; they stop working after it (sandbox clock)
        "expire_all_tokens": False,    # action: true expires every issued token now, then reads false
        "page_size": 2,                # server page size of every collection (BC online: 20,000)
        "etag_conflict_next": 0,       # next N PATCHes answer 412 and bump the etag (another user edited)
        "retry_after_seconds": None,   # Retry-After on 429s; None: no header (BC's is undocumented)
    }
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.COUNTER_DEFAULTS,
        "tokens_issued": 0,
        "token_errors": 0,
        "auth_failures": 0,
        "sales_order_pages_served": 0,
        "patches": 0,
        "etag_conflicts": 0,
        "sales_orders_created": 0,
        "sales_orders_patched": 0,
    }

    def __init__(self, seed_path: Path = SEED_PATH) -> None:
        self.seed_path = seed_path
        self._rowversion = 0
        super().__init__()

    def _coerce_knob(self, name: str, value: Any) -> Any:
        """``retry_after_seconds`` also takes ``None`` (no header); the rest as in the base class."""
        if name == "retry_after_seconds":
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"knob 'retry_after_seconds' expects null or a number >= 0, got {value!r}")
            return int(value)
        return super()._coerce_knob(name, value)

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        """``expire_all_tokens`` is an action: expire every token now and read false again."""
        if changed.get("expire_all_tokens"):
            now = self.now()
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, now)
            self.knobs["expire_all_tokens"] = False
        if "page_size" in changed and self.knobs["page_size"] < 1:
            self.knobs["page_size"] = 1

    def reset_vendor_data(self) -> None:
        """Reload the seed; record times are offsets from now, so every reset starts a fresh timeline."""
        seed = load_seed(self.seed_path)
        self.seed = seed
        self.tenant_id: str = seed["tenant_id"]
        self.environment: str = seed["environment"]
        self.started_at = ms(self.now())
        self.company: dict[str, Any] = seed["company"]
        self.company_information: dict[str, Any] = seed["company_information"]
        self.shipment_methods: dict[str, dict[str, Any]] = {m["code"]: m for m in seed["shipment_methods"]}
        self.shipping_agents: dict[str, set[str]] = {
            a["code"]: set(a["services"]) for a in seed["shipping_agents"]}
        self.items: dict[str, dict[str, Any]] = {i["number"]: i for i in seed["items"]}
        self.customers: dict[str, dict[str, Any]] = {c["number"]: c for c in seed["customers"]}
        self.tokens: dict[str, IssuedToken] = {}
        # ShipStation pipeline: item modification times (control ``items/touch``), sales invoices and webhook
        # subscriptions (:mod:`.sales_invoices`)
        self.item_modified: dict[str, datetime] = {}
        self.customer_modified: dict[str, datetime] = {}  # control ``customers/touch``
        self.invoices: dict[str, dict[str, Any]] = {}
        self.invoice_seq = 1000
        self.sales_order_seq = 102000  # numbers of orders created through the API (S-ORD102001...)
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, StoredOrder] = {}
        for record in seed["sales_orders"]:
            self.orders[record["id"]] = StoredOrder(
                seed=record, status=record["status"], version=self.next_rowversion(),
                modified_at=self.started_at - timedelta(minutes=record["modified_minutes_ago"]))

    def next_rowversion(self) -> int:
        """A tenant-wide increasing row version (like SQL rowversion) that feeds every etag."""
        self._rowversion += 1
        return self._rowversion

    def is_api_path(self, path: str) -> bool:
        """Only BC API routes are delayed and throttled; the Entra token endpoint is another service."""
        return path.startswith("/v2.0/")

    def rate_limit_error(self) -> VendorError:
        """BC's 429; ``Retry-After`` only when the ``retry_after_seconds`` knob is set (BC's is unverified)."""
        retry_after = self.knobs.get("retry_after_seconds")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return odata_error(429, *TOO_MANY_REQUESTS, headers=headers)

    # -- tokens -----------------------------------------------------------------------------------
    def issue_token(self, tenant: str, client_id: str) -> tuple[str, int]:
        """Issue a token; return it with its ``expires_in``."""
        with self.lock:
            ttl = int(self.knobs["token_ttl_seconds"])
            access_token = secrets.token_urlsafe(48)  # opaque on purpose: clients must not parse tokens
            self.tokens[access_token] = IssuedToken(tenant, client_id, self.now() + timedelta(seconds=ttl))
            self.counters["tokens_issued"] += 1
            return access_token, ttl

    def token_is_valid(self, access_token: str) -> bool:
        """True for an unexpired token this sandbox issued."""
        with self.lock:
            token = self.tokens.get(access_token)
            return token is not None and self.now() < token.expires_at

    # -- orders -----------------------------------------------------------------------------------
    def find_order(self, *, order_id: str | None = None, number: str | None = None) -> StoredOrder | None:
        """An order by id (case-insensitive GUID) or by number."""
        with self.lock:
            if order_id is not None:
                return self.orders.get(order_id.lower())
            return next((o for o in self.orders.values() if o.number == number), None)

    def order_or_404(self, order_id: str) -> StoredOrder:
        """An order by id, or BC's 404 for a record that does not exist."""
        order = self.find_order(order_id=order_id)
        if order is None:
            raise record_not_found("Sales Header", order_id)
        return order

    def touch(self, order: StoredOrder, at: datetime | None = None) -> None:
        """Record a modification: new row version (etag) and lastModifiedDateTime."""
        with self.lock:
            order.version = self.next_rowversion()
            order.modified_at = ms(at or self.now())

