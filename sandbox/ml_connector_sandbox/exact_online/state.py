"""State of the Exact Online sandbox: OAuth tokens (the rotating refresh token), rate-limit windows, records."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from ml_connector_sandbox.common import SandboxState, VendorError
from ml_connector_sandbox.credentials import EXACT_ONLINE_CLIENT_ID, EXACT_ONLINE_CLIENT_SECRET
from ml_connector_sandbox.exact_online import seed

#: the sandbox app's credentials (the ``exact_online_default`` login / password in airflow_settings.yaml)
CLIENT_ID = EXACT_ONLINE_CLIENT_ID
CLIENT_SECRET = EXACT_ONLINE_CLIENT_SECRET
#: the refresh token valid after every start or reset (the connection's first ``refresh_token``)
INITIAL_REFRESH_TOKEN = "sandbox-exact-refresh-token-0"
#: the authorization code the sandbox's /api/oauth2/auth hands out (for `ml-connector exact-online authorize`)
AUTHORIZATION_CODE = "sandbox-exact-code"
WEBHOOK_SECRET = "sandbox-exact-webhook-secret"


def to_exact_date(value: datetime | None) -> str | None:
    """``/Date(<epoch ms>)/``."""
    return None if value is None else f"/Date({int(value.timestamp() * 1000)})/"


@dataclass
class Delivery:
    entry_id: str
    number: int
    address_id: str | None
    method: tuple[str, str]
    lines: list[dict[str, Any]]
    modified: datetime
    tracking: str | None = None
    remarks: str | None = None
    description: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class ExactOnlineState(SandboxState):
    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.KNOB_DEFAULTS,
        "minute_limit": 60,            # calls per minute per division
        "day_limit": 5000,             # calls per day per division
        "minute_seconds": 60.0,        # length of a rate-limit "minute" (shorten it for benchmarks)
        "refresh_min_interval": 570.0,  # a refresh sooner than this after the last one is refused
        "token_lifetime": 600,         # access token seconds (expires_in)
        "page_size": 3,                # records per page (Exact: 60; small here so that __next is exercised)
        "refuse_fields": "",           # comma-separated goods delivery fields a PUT is refused for
        "rotate_on_too_early": False,  # a too-early refusal still carries a new refresh token (seen by others)
    }
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.COUNTER_DEFAULTS,
        "token_refreshes": 0, "token_refused": 0, "code_exchanges": 0, "writes": 0, "over_limit_calls": 0,
    }

    def rate_limit_error(self) -> VendorError:
        """Exact's 429 (the ``burst_429`` knob): an empty body and the minutely headers only."""
        reset = int((self.now().timestamp() + 1) * 1000)
        return VendorError(429, None, {"X-RateLimit-Minutely-Limit": str(self.knobs["minute_limit"]),
                                       "X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": str(reset)})

    def reset_vendor_data(self) -> None:
        now = datetime.now(UTC)
        self.refresh_token = INITIAL_REFRESH_TOKEN
        self.last_refresh: datetime | None = None
        self.access_tokens: dict[str, datetime] = {}
        self.minute_window = (0.0, 0)  # (start epoch, calls)
        self.day_window = (now.date(), 0)
        self.items = {i["ID"]: dict(i) for i in seed.ITEMS}
        self.addresses = {a["ID"]: dict(a) for a in seed.ADDRESSES}
        codes = {i["Code"]: i for i in seed.ITEMS}
        self.sales_orders: dict[int, dict[str, Any]] = {}
        for number, so in seed.SALES_ORDERS.items():
            self.sales_orders[number] = {
                "OrderID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"so-{number}")), "OrderNumber": number,
                "Currency": so["Currency"],
                "SalesOrderLines": [{"ID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"so-{number}-{n}")),
                                     "UnitPrice": price} for n, price in enumerate(so["prices"])]}
        self.deliveries: dict[str, Delivery] = {}
        for d in seed.DELIVERIES:
            entry_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"gd-{d['number']}"))
            so = self.sales_orders[d["order"]]
            lines = []
            for n, (code, quantity) in enumerate(d["lines"]):
                item = codes[code]
                lines.append({"ID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gdl-{d['number']}-{n}")), "EntryID": entry_id,
                              "Item": item["ID"], "ItemCode": code, "ItemDescription": item["Description"],
                              "QuantityDelivered": quantity, "SalesOrderLineID": so["SalesOrderLines"][n]["ID"],
                              "SalesOrderNumber": d["order"], "TrackingNumber": None})
            address = seed.ADDRESSES[d["address"] - 1]["ID"] if d["address"] else None
            self.deliveries[entry_id] = Delivery(entry_id, d["number"], address, d["method"], lines,
                                                 now - timedelta(minutes=d["minutes_ago"]), tracking=d.get("tracking"))

    # -- tokens ------------------------------------------------------------------------------------
    def issue_tokens(self) -> dict[str, Any]:
        """A new access token and a new refresh token; the old refresh token is dead from now on."""
        self.refresh_token = "rt-" + secrets.token_urlsafe(24) + "+/="  # real ones carry + / =
        access = "at-" + secrets.token_urlsafe(24)
        now = self.now()
        self.access_tokens[access] = now + timedelta(seconds=int(self.knobs["token_lifetime"]))
        self.last_refresh = now
        return {"access_token": access, "token_type": "bearer", "expires_in": str(self.knobs["token_lifetime"]),
                "refresh_token": self.refresh_token}

    def token_valid(self, token: str) -> bool:
        expires = self.access_tokens.get(token)
        return expires is not None and expires > self.now()

    # -- rate limits -------------------------------------------------------------------------------
    def count_call(self) -> tuple[dict[str, str], VendorError | None]:
        """Count one API call of the division; the rate-limit headers, and the 429 when over a limit."""
        now = self.now()
        length = float(self.knobs["minute_seconds"])
        epoch = now.timestamp()
        start = epoch - epoch % length
        window_start, calls = self.minute_window
        if window_start != start:
            window_start, calls = start, 0
        day, day_calls = self.day_window
        if day != now.date():
            day, day_calls = now.date(), 0
        minute_limit, day_limit = int(self.knobs["minute_limit"]), int(self.knobs["day_limit"])
        minute_reset = int((window_start + length) * 1000)
        day_reset = int(datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC).timestamp() * 1000)
        if day_calls >= day_limit:
            self.increment("rate_limited")
            return {}, VendorError(429, None, {"X-RateLimit-Limit": str(day_limit), "X-RateLimit-Remaining": "0",
                                               "X-RateLimit-Reset": str(day_reset)})
        if calls >= minute_limit:
            self.increment("rate_limited")
            return {}, VendorError(429, None, {"X-RateLimit-Minutely-Limit": str(minute_limit),
                                               "X-RateLimit-Minutely-Remaining": "0",
                                               "X-RateLimit-Minutely-Reset": str(minute_reset)})
        calls, day_calls = calls + 1, day_calls + 1
        self.minute_window, self.day_window = (window_start, calls), (day, day_calls)
        return {"X-RateLimit-Limit": str(day_limit), "X-RateLimit-Remaining": str(day_limit - day_calls),
                "X-RateLimit-Reset": str(day_reset), "X-RateLimit-Minutely-Limit": str(minute_limit),
                "X-RateLimit-Minutely-Remaining": str(minute_limit - calls),
                "X-RateLimit-Minutely-Reset": str(minute_reset)}, None

    # -- records -----------------------------------------------------------------------------------
    def delivery_json(self, d: Delivery) -> dict[str, Any]:
        return {
            "EntryID": d.entry_id, "DeliveryNumber": d.number, "DeliveryDate": to_exact_date(d.modified),
            "DeliveryAccountName": (self.addresses.get(d.address_id or "") or {}).get("AccountName"),
            "DeliveryAddress": d.address_id, "DeliveryContact": None, "Description": d.description,
            "Remarks": d.remarks, "ShippingMethod": str(uuid.uuid5(uuid.NAMESPACE_URL, d.method[0])),
            "ShippingMethodCode": d.method[0], "ShippingMethodDescription": d.method[1],
            "TrackingNumber": d.tracking, "Modified": to_exact_date(d.modified),
            "GoodsDeliveryLines": [dict(line) for line in d.lines],
        }
