"""State of the Acumatica sandbox: knobs, counters, sessions, shipments (plain values) and their files."""

from __future__ import annotations

import copy
import json
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from ml_connector_sandbox.common import SandboxState, VendorError

SEED_PATH = Path(__file__).with_name("seed.json")
#: the session cookie (Acumatica sets .ASPXAUTH and ASP.NET_SessionId; one is enough to tell sessions apart)
SESSION_COOKIE = ".ASPXAUTH"
#: where a record's files are uploaded: the shipment graph's primary view, as the official client shows
FILES_PATH = "files/PX.Objects.SO.SOShipmentEntry/Document/{id}/{filename}"


class AcumaticaState(SandboxState):
    """Knobs: ``max_sessions`` (API-user slots of the licence; a trial has 2), ``session_idle_seconds``
    (idle expiry), ``expire_sessions`` (set true: every open session expires now, as after an app pool
    recycle), ``fail_shipment_puts`` (the next N shipment updates fail with Acumatica's 500 "Another process has
    updated the record"). Counters: ``logins``, ``logouts``, ``logins_refused``, ``shipment_puts``, ``files_uploaded``,
    ``files_replaced``, ``packages_inserted``, ``not_logged_in``, ``sales_order_reads``, ``stock_item_reads``.

    Data: shipments, and the sales orders (``OrderType``/``OrderNbr``, ``CurrencyID``, ``Details`` with
    ``LineNbr``/``InventoryID``/``OrderQty``/``UnitPrice``) and stock items (``InventoryID``,
    ``CountryOfOrigin``, ``TariffCode``) they were shipped from."""

    KNOB_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.KNOB_DEFAULTS,
        "max_sessions": 2,
        "session_idle_seconds": 1200,
        "expire_sessions": False,
        "fail_shipment_puts": 0,  # the next N PUT .../Shipment fail as when another user saved the record first
    }
    COUNTER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SandboxState.COUNTER_DEFAULTS,
        "logins": 0,
        "logouts": 0,
        "logins_refused": 0,
        "not_logged_in": 0,
        "shipment_puts": 0,
        "files_uploaded": 0,
        "files_replaced": 0,
        "packages_inserted": 0,
        "tokens_issued": 0,
        "sales_order_reads": 0,
        "stock_item_reads": 0,
    }

    def __init__(self, seed_path: Path = SEED_PATH) -> None:
        self.seed = json.loads(seed_path.read_text(encoding="utf-8"))
        self.started = None
        self.sessions: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.shipments: dict[str, dict[str, Any]] = {}
        self.sales_orders: dict[tuple[str, str], dict[str, Any]] = {}
        self.stock_items: dict[str, dict[str, Any]] = {}
        super().__init__()

    # -- data --------------------------------------------------------------------------------------------
    def reset_vendor_data(self) -> None:
        self.sessions = {}
        self.tokens = set()
        self.shipments = {}
        self.sales_orders = {}
        for raw in self.seed.get("sales_orders", []):
            order = copy.deepcopy(raw)
            order["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"acumatica/salesorder/{raw['OrderType']}/{raw['OrderNbr']}"))
            for index, line in enumerate(order.get("Details", []), start=1):
                line["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{order['id']}/detail/{index}"))
                line.setdefault("LineNbr", index)
            self.sales_orders[(order["OrderType"], order["OrderNbr"])] = order
        self.stock_items = {}
        for raw in self.seed.get("stock_items", []):
            item = copy.deepcopy(raw)
            item["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"acumatica/stockitem/{raw['InventoryID']}"))
            self.stock_items[item["InventoryID"].upper()] = item
        now = self.now()
        for raw in self.seed["shipments"]:
            shipment = {k: copy.deepcopy(v) for k, v in raw.items() if k not in ("exercises", "expect",
                                                                                  "modified_minutes_ago")}
            shipment["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"acumatica/shipment/{raw['ShipmentNbr']}"))
            shipment["LastModifiedDateTime"] = now - timedelta(minutes=raw.get("modified_minutes_ago", 10))
            shipment["CreatedDateTime"] = shipment["LastModifiedDateTime"] - timedelta(hours=1)
            for index, package in enumerate(shipment.get("Packages", []), start=1):
                package["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{shipment['id']}/package/{index}"))
                package.setdefault("TrackingNbr", "")
                package["LineNbr"] = index
            for index, row in enumerate(shipment.get("Details", []), start=1):
                row["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{shipment['id']}/detail/{index}"))
                row["LineNbr"] = index
            for index, row in enumerate(shipment.get("Orders", []), start=1):
                row["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{shipment['id']}/order/{index}"))
            shipment["note"] = ""
            shipment["custom"] = {}
            shipment["files"] = {}  # filename -> bytes
            self.shipments[shipment["ShipmentNbr"]] = shipment

    def find_sales_order(self, order_type: str, order_nbr: str) -> dict[str, Any] | None:
        with self.lock:
            return self.sales_orders.get((order_type, order_nbr))

    def endpoints(self) -> list[tuple[str, str]]:
        return [tuple(e) for e in self.seed["endpoints"]]

    def find(self, *, record_id: str | None = None, number: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            for shipment in self.shipments.values():
                if (record_id and shipment["id"] == record_id) or (number and shipment["ShipmentNbr"] == number):
                    return shipment
        return None

    def touch(self, shipment: dict[str, Any], when: datetime | None = None) -> None:
        shipment["LastModifiedDateTime"] = when or self.now()

    # -- sessions ----------------------------------------------------------------------------------------
    def on_knobs_changed(self, changed: dict[str, Any]) -> None:
        if changed.get("expire_sessions"):
            self.sessions = {}
            self.knobs["expire_sessions"] = False

    def open_session(self, user: str) -> str:
        """A new session for ``user``; refused when the licence's slots are all taken."""
        with self.lock:
            self._expire_idle()
            if len(self.sessions) >= self.knobs["max_sessions"]:
                self.counters["logins_refused"] += 1
                raise VendorError(500, {
                    "message": "An error has occurred.",
                    "exceptionMessage": f"API Login Limit: the licence allows {self.knobs['max_sessions']} "
                                        "concurrent API users; log out unused sessions or wait for them to expire",
                    "exceptionType": "PX.Data.PXException"})
            token = secrets.token_hex(24)
            self.sessions[token] = {"user": user, "last_seen": self.now()}
            self.counters["logins"] += 1
            return token

    def issue_token(self) -> str:
        """A bearer token of the identity server (``/identity/connect/token``)."""
        with self.lock:
            token = secrets.token_urlsafe(32)
            self.tokens.add(token)
            self.counters["tokens_issued"] = self.counters.get("tokens_issued", 0) + 1
            return token

    def token_ok(self, token: str) -> bool:
        with self.lock:
            return token in self.tokens

    def close_session(self, token: str | None) -> bool:
        with self.lock:
            if token and self.sessions.pop(token, None) is not None:
                self.counters["logouts"] += 1
                return True
            return False

    def session_ok(self, token: str | None) -> bool:
        with self.lock:
            self._expire_idle()
            session = self.sessions.get(token or "")
            if session is None:
                return False
            session["last_seen"] = self.now()
            return True

    def _expire_idle(self) -> None:
        limit = timedelta(seconds=self.knobs["session_idle_seconds"])
        now = self.now()
        for token in [t for t, s in self.sessions.items() if now - s["last_seen"] > limit]:
            del self.sessions[token]

    def open_sessions(self) -> int:
        with self.lock:
            self._expire_idle()
            return len(self.sessions)

    def rate_limit_error(self) -> VendorError:
        return VendorError(429, {"message": "API request limit exceeded: too many requests per minute for the "
                                            "licence. Try again later."})
