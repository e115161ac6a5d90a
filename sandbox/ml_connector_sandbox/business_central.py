"""Business Central sandbox: Entra client-credentials tokens, API v2.0 and the ml-connector write-back page.

One app stands in for both hosts the hook talks to (the hook's ``authority`` extra points the token
request at it):

* ``POST /{tenant}/oauth2/v2.0/token`` - Microsoft Entra client credentials.
* ``/v2.0/{tenant}/{environment}/api/v2.0/...`` - the standard API v2.0: ``companies``,
  ``companyInformation``, ``salesOrders`` (with ``$filter``, ``$expand=salesOrderLines,shipmentMethod``,
  ``$select``, ``$top``, ``$skip``, ``$count`` and server-driven paging), ``salesOrderLines``,
  ``shipmentMethods``, ``items``. The tenant segment may be left out, as in BC.
* ``/v2.0/{tenant}/{environment}/api/mlconnector/shipping/v1.0/companies({id})/salesOrderShipping`` -
  the custom API page of ``ml_connector/erp/business_central/al`` (GET, PATCH with ``If-Match``).

Shapes follow ``docs/vendors/erp-and-shipstation.md`` section 1 (v2.0 page sources). Error bodies use BC's
OData shape ``{"error": {"code", "message"}}``; codes marked *observed* come from cited public reports,
*sandbox* ones are our choice where Microsoft documents none. Control endpoints (no auth, never
throttled) are the common ones under ``/_sandbox/`` plus ``/_sandbox/business_central/touch`` and
``/_sandbox/business_central/orders``.

Behaviour a client must cope with, as against BC:

* every collection is paged server-side (``page_size`` knob, default 2; ``Prefer: odata.maxpagesize``
  lowers it) with an absolute ``@odata.nextLink`` carrying a key-based ``$skiptoken``;
* ``status eq 'Open'`` means *Released*; BC-open orders are ``Draft``;
* the write-back page's ``@odata.etag`` is its own (GET it before PATCH; the salesOrders etag gives 412),
  and a successful PATCH also moves the order's ``lastModifiedDateTime``, so the next poll sees it again;
* ``If-Match: *`` is accepted as BC does (it skips the concurrency check and the ``etag_conflict_next``
  knob); the connector should not use it.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector_sandbox.common import CONTROL_PREFIX, SandboxState, VendorError, install_sandbox

VENDOR = "business_central"
SEED_PATH = Path(__file__).parent / "seed" / "business_central_orders.json"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
WRITEBACK_ROUTE = ("mlconnector", "shipping", "v1.0")
CONTROL_VENDOR_PREFIX = f"{CONTROL_PREFIX}/{VENDOR}"
_ID_NAMESPACE = uuid.UUID("0d7f2f5e-3c1b-4a7e-9f3a-6b2d8c4e1a90")  # derives stable line/unit ids

# -- error bodies -------------------------------------------------------------------------------------
#: observed (api-notes; dynamics365smb-devitpro-pb#813): PATCH without (or with a malformed) If-Match.
INVALID_TOKEN = ("BadRequest_InvalidToken", "Could not validate the client concurrency token required by the "
                 "service. Please provide a valid token in the client request.")
#: observed (brief/api-notes: "a stale etag gives 412"): If-Match no longer matches.
ENTITY_CHANGED = ("Request_EntityChanged", "Another user has already changed the record.")
#: observed (brief): missing/unknown/expired bearer token.
AUTH_INVALID = ("Authentication_InvalidCredentials", "The credentials provided are incorrect")
#: observed (brief; api-notes "429 Too Many Requests"); message wording is ours.
TOO_MANY_REQUESTS = ("Application_TooManyRequests",
                     "Too many requests reached. Actual (601). Maximum (600). Please retry the request later.")
#: observed (microsoft/AL#8283): route that no published API serves (e.g. the AL extension not installed).
NO_RESOURCE = "BadRequest_NotFound"
#: sandbox: a record id that does not exist (BC answers 404; the code is our pick).
RECORD_NOT_FOUND = "Internal_RecordNotFound"
#: observed (dynamics365smb-devitpro-pb#609) code; used for an unknown company id (404 here).
COMPANY_NOT_FOUND = "Internal_CompanyNotFound"
#: sandbox: AL Error() raised by the write-back page (unknown shipping agent/service).
DIALOG = "Application_DialogException"
#: sandbox: a Text value longer than its field.
STRING_TOO_LONG = "Application_StringExceededLength"


def odata_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> VendorError:
    """A BC OData error: ``{"error": {"code": ..., "message": ...}}``."""
    return VendorError(status, {"error": {"code": code, "message": message}}, headers)


def bad_request(message: str) -> VendorError:
    """400 ``BadRequest`` (query syntax, unknown properties, wrong types)."""
    return odata_error(400, "BadRequest", message)


def entra_error(status: int, error: str, aadsts: int, description: str) -> VendorError:
    """A Microsoft Entra token-endpoint error (``error``, ``error_description`` starting with AADSTS...)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return VendorError(status, {
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace} Correlation ID: {correlation} "
                             f"Timestamp: {now}",
        "error_codes": [aadsts],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    })


# -- formatting -----------------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    """BC's Edm.DateTimeOffset as OData writes it: UTC, ``Z``, fraction without trailing zeros
    (``2026-11-01T10:15:30.12Z``; none at all on a whole second, like ``0001-01-01T00:00:00Z``)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _ms(value: datetime) -> datetime:
    """Truncate to milliseconds, the precision BC stores and returns."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def make_etag(kind: str, key: str, version: int) -> str:
    """A weak etag shaped like BC's (``W/"JzE..."``: base64 of ``'<len>;<token>;00;'``)."""
    token = base64.b64encode(f"{kind}:{key}:{version}".encode()).decode().rstrip("=")
    inner = f"'{len(token)};{token};00;'"
    return f'W/"{base64.b64encode(inner.encode()).decode()}"'


_ETAG_SYNTAX = re.compile(r'^W/"[A-Za-z0-9+/]+=*"$')


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, ":".join(parts)))


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


# -- $filter ------------------------------------------------------------------------------------------

_EDM = {"string": "Edm.String", "datetime": "Edm.DateTimeOffset", "date": "Edm.Date", "guid": "Edm.Guid",
        "number": "Edm.Decimal", "bool": "Edm.Boolean"}
_OPERATORS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
              "lt": "LessThan", "le": "LessThanOrEqual"}
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[,/])
""", re.VERBOSE)

Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class FilterField:
    """A property ``$filter`` may name: its type, and for enums the values BC accepts."""

    kind: str
    values: tuple[str, ...] = ()


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise bad_request(f"Syntax error at position {pos} in '{text}'.")
        pos = match.end()
        if match.lastgroup != "ws":
            tokens.append((match.lastgroup, match.group()))
    return tokens


def _literal(kind: str, text: str, entity: str) -> tuple[str, Any]:
    """Convert a literal token to (Edm kind, Python value)."""
    if kind == "string":
        return "string", text[1:-1].replace("''", "'")
    if kind == "datetime":
        fraction = re.search(r"\.(\d+)", text)
        if fraction and len(fraction.group(1)) > 6:  # BC allows 7 digits; Python 6
            text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
        return "datetime", datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind == "date":
        return "date", date.fromisoformat(text)
    if kind == "guid":
        return "guid", text.lower()
    if kind == "number":
        return "number", Decimal(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return "bool", lowered == "true"
    if kind == "ident":  # OData reads a bare word as a property: 'Open' unquoted is not a value
        raise bad_request(f"Could not find a property named '{text}' on type 'Microsoft.NAV.{entity}'.")
    raise bad_request(f"Syntax error: '{text}' is not a literal.")


def parse_filter(text: str, fields: Mapping[str, FilterField], entity: str) -> Predicate:
    """Compile the OData ``$filter`` subset BC clients use: ``field op literal`` joined by and/or, brackets.

    Anything else (functions, ``not``, arithmetic, unknown properties, mismatched types) is a 400, so
    that a client bug such as a quoted datetime fails here as it fails against BC.
    """
    tokens = _tokenize(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise bad_request(f"Syntax error: unexpected end of '$filter={text}'.")
        pos += 1
        return tokens[pos - 1]

    def or_expr() -> Predicate:
        parts = [and_expr()]
        while (tok := peek()) and tok[0] == "ident" and tok[1] == "or":
            take()
            parts.append(and_expr())
        return parts[0] if len(parts) == 1 else (lambda rec: any(p(rec) for p in parts))

    def and_expr() -> Predicate:
        parts = [primary()]
        while (tok := peek()) and tok[0] == "ident" and tok[1] == "and":
            take()
            parts.append(primary())
        return parts[0] if len(parts) == 1 else (lambda rec: all(p(rec) for p in parts))

    def primary() -> Predicate:
        kind, value = take()
        if kind == "open":
            inner = or_expr()
            if take()[0] != "close":
                raise bad_request(f"Syntax error: ')' expected in '$filter={text}'.")
            return inner
        if kind != "ident":
            raise bad_request(f"Syntax error: a property name was expected, found '{value}'.")
        if value == "not":
            raise bad_request("The sandbox supports only comparisons joined with and/or; 'not' is not supported.")
        if (nxt := peek()) and nxt[0] == "open":
            raise bad_request(f"The sandbox supports only comparisons joined with and/or; "
                              f"function '{value}' is not supported.")
        if value not in fields:
            raise bad_request(f"Could not find a property named '{value}' on type 'Microsoft.NAV.{entity}'.")
        spec = fields[value]
        op_kind, op = take()
        if op_kind != "ident" or op not in _OPERATORS:
            raise bad_request(f"Syntax error: comparison operator expected after '{value}', found '{op}'.")
        lit_kind, lit_text = take()
        literal_type, literal = _literal(lit_kind, lit_text, entity)
        if literal_type != spec.kind:
            raise bad_request(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM[spec.kind]}' and '{_EDM[literal_type]}' for operator kind '{_OPERATORS[op]}'.")
        if spec.values and literal not in spec.values:
            raise bad_request(f"The value '{literal}' is not valid for property '{value}'. "
                              f"Valid values: {', '.join(spec.values)}.")
        return _comparison(value, op, literal, spec.kind)

    predicate = or_expr()
    if pos != len(tokens):
        raise bad_request(f"Syntax error at '{tokens[pos][1]}' in '$filter={text}'.")
    return predicate


def _comparison(name: str, op: str, literal: Any, kind: str) -> Predicate:
    convert: Callable[[Any], Any] = {
        "datetime": lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
        "date": date.fromisoformat,
        "guid": lambda v: v.lower(),
        "number": lambda v: Decimal(str(v)),
    }.get(kind, lambda v: v)

    def test(record: Mapping[str, Any]) -> bool:
        value = record.get(name)
        if value is None:
            return op == "ne"
        value = convert(value)
        return {"eq": value == literal, "ne": value != literal, "gt": value > literal,
                "ge": value >= literal, "lt": value < literal, "le": value <= literal}[op]
    return test


SALES_ORDER_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"),
    "number": FilterField("string"),
    "externalDocumentNumber": FilterField("string"),
    "customerNumber": FilterField("string"),
    "customerId": FilterField("guid"),
    "status": FilterField("string", ("Draft", "In Review", "Open")),
    "orderDate": FilterField("date"),
    "lastModifiedDateTime": FilterField("datetime"),
    "fullyShipped": FilterField("bool"),
}
SHIPPING_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"),
    "number": FilterField("string"),
    "packageTrackingNo": FilterField("string"),
    "mlShipmentStatus": FilterField("string"),
    "lastModifiedDateTime": FilterField("datetime"),
}
ITEM_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"), "number": FilterField("string"), "displayName": FilterField("string"),
    "lastModifiedDateTime": FilterField("datetime"),
}
SHIPMENT_METHOD_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"), "code": FilterField("string"), "displayName": FilterField("string"),
    "lastModifiedDateTime": FilterField("datetime"),
}
COMPANY_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"), "name": FilterField("string"), "displayName": FilterField("string"),
}


# -- state ----------------------------------------------------------------------------------------------


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
        seed = json.loads(self.seed_path.read_text())
        self.seed = seed
        self.tenant_id: str = seed["tenant_id"]
        self.environment: str = seed["environment"]
        self.started_at = _ms(self.now())
        self.company: dict[str, Any] = seed["company"]
        self.company_information: dict[str, Any] = seed["company_information"]
        self.shipment_methods: dict[str, dict[str, Any]] = {m["code"]: m for m in seed["shipment_methods"]}
        self.shipping_agents: dict[str, set[str]] = {
            a["code"]: set(a["services"]) for a in seed["shipping_agents"]}
        self.items: dict[str, dict[str, Any]] = {i["number"]: i for i in seed["items"]}
        self.customers: dict[str, dict[str, Any]] = {c["number"]: c for c in seed["customers"]}
        self.tokens: dict[str, IssuedToken] = {}
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

    def touch(self, order: StoredOrder, at: datetime | None = None) -> None:
        """Record a modification: new row version (etag) and lastModifiedDateTime."""
        with self.lock:
            order.version = self.next_rowversion()
            order.modified_at = _ms(at or self.now())


# -- entity JSON ------------------------------------------------------------------------------------


class EntityBuilder:
    """Builds the v2.0 / write-back JSON of the stored records (all reads go through here)."""

    def __init__(self, state: BusinessCentralState) -> None:
        self.state = state

    def company(self) -> dict[str, Any]:
        c = self.state.company
        created = iso(self.state.started_at - timedelta(days=400))
        return {
            "id": c["id"], "systemVersion": c["systemVersion"], "timestamp": 8114, "name": c["name"],
            "displayName": c["displayName"], "businessProfileId": c.get("businessProfileId", ""),
            "systemCreatedAt": created, "systemCreatedBy": EMPTY_GUID,
            "systemModifiedAt": created, "systemModifiedBy": EMPTY_GUID,
        }

    def company_information(self) -> dict[str, Any]:
        info = self.state.company_information
        return {"@odata.etag": make_etag("CI", info["id"], 1), **info,
                "lastModifiedDateTime": iso(self.state.started_at - timedelta(days=30))}

    def shipment_method(self, method: Mapping[str, Any]) -> dict[str, Any]:
        return {"@odata.etag": make_etag("SM", method["id"], 1), "id": method["id"], "code": method["code"],
                "displayName": method["displayName"],
                "lastModifiedDateTime": iso(self.state.started_at - timedelta(days=90))}

    def item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        price = Decimal(str(item["unitPrice"]))
        # No weight property: API v2.0 items have none (the connector's weight rule documents why).
        return {
            "@odata.etag": make_etag("IT", item["id"], 1), "id": item["id"], "number": item["number"],
            "displayName": item["displayName"], "displayName2": "", "type": "Inventory",
            "itemCategoryId": EMPTY_GUID, "itemCategoryCode": "FURNITURE", "blocked": False, "gtin": "",
            "inventory": 100, "unitPrice": _money(price), "priceIncludesTax": False,
            "unitCost": _money(price * Decimal("0.62")), "taxGroupId": EMPTY_GUID, "taxGroupCode": "FURNITURE",
            "baseUnitOfMeasureId": _stable_id("uom", "PCS"), "baseUnitOfMeasureCode": "PCS",
            "generalProductPostingGroupId": EMPTY_GUID, "generalProductPostingGroupCode": "RETAIL",
            "inventoryPostingGroupId": EMPTY_GUID, "inventoryPostingGroupCode": "RESALE",
            "lastModifiedDateTime": iso(self.state.started_at - timedelta(days=60)),
        }

    def _order_date(self, order: StoredOrder) -> str:
        """The day before the seed's modification time; fixed, so touching an order does not move it."""
        created = self.state.started_at - timedelta(minutes=order.seed["modified_minutes_ago"], days=1)
        return created.date().isoformat()

    def _lines(self, order: StoredOrder) -> list[dict[str, Any]]:
        result = []
        order_date = self._order_date(order)
        for index, line in enumerate(order.seed["lines"], start=1):
            sequence = index * 10000
            line_type = line.get("lineType", "Item")
            item = self.state.items.get(line.get("item", "")) if line_type == "Item" else None
            quantity = Decimal(str(line.get("quantity", 0)))
            shipped = Decimal(str(line.get("shippedQuantity", 0)))
            price = Decimal(str(line.get("unitPrice", item["unitPrice"] if item else 0)))
            amount = quantity * price
            result.append({
                "@odata.etag": make_etag("SL", f"{order.id}:{sequence}", order.version),
                "id": _stable_id(order.id, str(sequence)),
                "documentId": order.id,
                "sequence": sequence,
                "itemId": item["id"] if item else EMPTY_GUID,
                "accountId": _stable_id("gl", line["account"]) if line_type == "Account" else EMPTY_GUID,
                "lineType": line_type,
                "lineObjectNumber": item["number"] if item else line.get("account", ""),
                "description": line.get("description", item["displayName"] if item else ""),
                "description2": "",
                "unitOfMeasureId": _stable_id("uom", "PCS") if item else EMPTY_GUID,
                "unitOfMeasureCode": "PCS" if item else "",
                "quantity": float(quantity),
                "unitPrice": _money(price),
                "discountAmount": 0, "discountPercent": 0, "discountAppliedBeforeTax": False,
                "amountExcludingTax": _money(amount), "taxCode": "FURNITURE" if item else "",
                "taxPercent": 0, "totalTaxAmount": 0, "amountIncludingTax": _money(amount),
                "invoiceDiscountAllocation": 0, "netAmount": _money(amount), "netTaxAmount": 0,
                "netAmountIncludingTax": _money(amount),
                "shipmentDate": order_date,
                "shippedQuantity": float(shipped),
                "invoicedQuantity": float(shipped),
                "invoiceQuantity": float(quantity - shipped),
                "shipQuantity": float(quantity - shipped),
                "itemVariantId": EMPTY_GUID, "locationId": EMPTY_GUID,
            })
        return result

    def sales_order(self, order: StoredOrder, expand: set[str] = frozenset()) -> dict[str, Any]:
        seed = order.seed
        ship_to = seed["shipTo"]
        customer = self.state.customers.get(seed["customer"], {"id": EMPTY_GUID, "number": seed["customer"],
                                                               "name": ship_to["name"]})
        method = self.state.shipment_methods.get(seed.get("shipmentMethod") or "")
        lines = self._lines(order)
        total = sum((Decimal(str(line["amountExcludingTax"])) for line in lines), Decimal(0))
        fully_shipped = all(line["shipQuantity"] <= 0 for line in lines if line["lineType"] == "Item")
        address = {
            "AddressLine1": ship_to["addressLine1"], "AddressLine2": ship_to["addressLine2"],
            "City": ship_to["city"], "Country": ship_to["country"], "State": ship_to["state"],
            "PostCode": ship_to["postCode"],
        }
        doc: dict[str, Any] = {
            "@odata.etag": make_etag("SO", order.id, order.version),
            "id": order.id,
            "number": order.number,
            "externalDocumentNumber": seed.get("externalDocumentNumber", ""),
            "orderDate": self._order_date(order),
            "postingDate": self._order_date(order),
            "customerId": customer["id"], "customerNumber": customer["number"], "customerName": customer["name"],
            "billToName": customer["name"], "billToCustomerId": customer["id"],
            "billToCustomerNumber": customer["number"],
            "shipToName": ship_to["name"], "shipToContact": ship_to["contact"],
            **{f"sellTo{k}": v for k, v in address.items()},
            **{f"billTo{k}": v for k, v in address.items()},
            **{f"shipTo{k}": v for k, v in address.items()},
            "shortcutDimension1Code": "", "shortcutDimension2Code": "",
            "currencyId": EMPTY_GUID, "currencyCode": "USD", "pricesIncludeTax": False,
            "paymentTermsId": EMPTY_GUID,
            "shipmentMethodId": method["id"] if method else EMPTY_GUID,
            "salesperson": "", "partialShipping": True, "requestedDeliveryDate": "0001-01-01",
            "discountAmount": 0, "discountAppliedBeforeTax": True,
            "totalAmountExcludingTax": _money(total), "totalTaxAmount": 0,
            "totalAmountIncludingTax": _money(total),
            "fullyShipped": fully_shipped,
            "status": order.status,
            "lastModifiedDateTime": iso(order.modified_at),
            "phoneNumber": seed.get("phoneNumber", ""),
            "email": seed.get("email", ""),
        }
        if "salesOrderLines" in expand:
            doc["salesOrderLines"] = lines
        if "shipmentMethod" in expand:
            doc["shipmentMethod"] = self.shipment_method(method) if method else None
        if "customer" in expand:
            doc["customer"] = {"id": customer["id"], "number": customer["number"],
                               "displayName": customer["name"]}
        return doc

    def shipping(self, order: StoredOrder) -> dict[str, Any]:
        """The write-back page's entity (``salesOrderShipping``); its etag differs from salesOrders'."""
        return {
            "@odata.etag": make_etag("SH", order.id, order.version),
            "id": order.id,
            "number": order.number,
            "packageTrackingNo": order.package_tracking_no,
            "shippingAgentCode": order.shipping_agent_code,
            "shippingAgentServiceCode": order.shipping_agent_service_code,
            "mlShipmentStatus": order.ml_shipment_status,
            "mlLastTrackingEvent": order.ml_last_tracking_event,
            # A blank BC DateTime serialises as the minimum value, not null.
            "mlDeliveredAt": iso(order.ml_delivered_at) if order.ml_delivered_at else "0001-01-01T00:00:00Z",
            "lastModifiedDateTime": iso(order.modified_at),
        }


# -- request helpers ---------------------------------------------------------------------------------

SALES_ORDER_NAVIGATION = {"salesOrderLines", "shipmentMethod", "customer"}
SALES_ORDER_NAVIGATION_V2 = SALES_ORDER_NAVIGATION | {
    "currency", "paymentTerm", "dimensionSetLines", "pdfDocument", "attachments", "documentAttachments"}

_PATH = re.compile(r"^/v2\.0/(?:(?P<tenant>[^/]+)/)?(?P<env>[^/]+)/api/(?P<api>.+)$")
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z$]+)(?:\((?P<key>[^)]*)\))?$")


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"OData-Version": "4.0", **(headers or {})})


def _key(raw: str | None) -> str | None:
    """An entity key from ``(...)``: BC takes bare GUIDs; quotes are tolerated."""
    if raw is None:
        return None
    return raw.strip().strip("'").lower()


def _page_size(request: Request, state: BusinessCentralState) -> tuple[int, dict[str, str]]:
    """Server page size, lowered by ``Prefer: odata.maxpagesize=N`` (answered with Preference-Applied)."""
    size = int(state.knob("page_size"))
    for preference in request.headers.get("prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit() and int(value) > 0:
            size = min(size, int(value))
            return size, {"Preference-Applied": f"odata.maxpagesize={size}"}
    return size, {}


def _int_option(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw}' for {name} query option found. "
                          f"The {name} query option requires a non-negative integer value.")
    return int(raw)


def _encode_skiptoken(after: str, remaining: int | None) -> str:
    raw = json.dumps({"after": after, "left": remaining}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_skiptoken(token: str) -> tuple[str, int | None]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(data["after"]), data["left"]
    except (ValueError, KeyError, TypeError):
        raise bad_request(f"The skip token value '{token}' is invalid.") from None


def _select(doc: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if not select:
        return doc
    return {k: v for k, v in doc.items() if k.startswith("@odata.") or k in select}


# -- the app --------------------------------------------------------------------------------------------


def create_app(state: BusinessCentralState | None = None) -> FastAPI:
    """Build the Business Central sandbox app (token endpoint, API v2.0, write-back page, control)."""
    state = state or BusinessCentralState()
    build = EntityBuilder(state)
    app = FastAPI(title="Business Central sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    install_sandbox(app, state)

    # -- Microsoft Entra ------------------------------------------------------------------------
    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        try:
            client_id, secret = _client_credentials(request, form)
            if tenant != state.tenant_id:
                raise entra_error(400, "invalid_request", 90002,
                                  f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                  "and are signing into the correct cloud.")
            if form.get("grant_type") != "client_credentials":
                raise entra_error(400, "unsupported_grant_type", 70003,
                                  "The app requested an unsupported grant type "
                                  f"'{form.get('grant_type', '')}'. This sandbox serves client_credentials.")
            if not form.get("scope"):
                raise entra_error(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'scope'.")
            if form["scope"] != SCOPE:
                raise entra_error(400, "invalid_scope", 1002012,
                                  f"The provided value for scope {form['scope']} is not valid. Client credential "
                                  f"flows must have a scope value with /.default suffixed to the resource "
                                  f"identifier (application ID URI); Business Central: {SCOPE}.")
            if secret == "wrong-secret":
                raise entra_error(401, "invalid_client", 7000215,
                                  "Invalid client secret provided. Ensure the secret being sent in the request "
                                  "is the client secret value, not the client secret ID, for a secret added to "
                                  f"app '{client_id}'.")
        except VendorError:
            state.increment("token_errors")
            raise
        access_token, ttl = state.issue_token(tenant, client_id)
        return JSONResponse({"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                             "access_token": access_token})

    # -- control --------------------------------------------------------------------------------
    @app.post(f"{CONTROL_VENDOR_PREFIX}/touch")
    async def touch(request: Request) -> JSONResponse:
        """Set an order's lastModifiedDateTime (default now) and optionally its API status."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("number"):
            return JSONResponse({"error": 'body must be {"number": ..., "modified_at"?: iso, "status"?: ...}'},
                                status_code=400)
        order = state.find_order(number=str(body["number"]))
        if order is None:
            return JSONResponse({"error": f"no sales order {body['number']!r}"}, status_code=404)
        at = None
        if body.get("modified_at"):
            try:
                at = datetime.fromisoformat(str(body["modified_at"]).replace("Z", "+00:00"))
            except ValueError:
                return JSONResponse({"error": f"modified_at {body['modified_at']!r} is not ISO-8601"},
                                    status_code=400)
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
        with state.lock:
            if "status" in body:
                if body["status"] not in SALES_ORDER_FILTER_FIELDS["status"].values:
                    return JSONResponse({"error": "status must be Draft, In Review or Open"}, status_code=400)
                order.status = body["status"]
            state.touch(order, at)
            doc = build.sales_order(order)
        return JSONResponse({k: doc[k] for k in ("@odata.etag", "id", "number", "status", "lastModifiedDateTime")})

    @app.get(f"{CONTROL_VENDOR_PREFIX}/orders")
    def orders_overview() -> list[dict[str, Any]]:
        """Every order with its API status and write-back fields (for assertions; no auth)."""
        with state.lock:
            return [{"status": o.status, **build.shipping(o)}
                    for o in sorted(state.orders.values(), key=lambda o: o.number)]

    # -- API ------------------------------------------------------------------------------------
    @app.api_route("/v2.0/{rest:path}", methods=["GET", "PATCH", "POST", "PUT", "DELETE"])
    async def api(rest: str, request: Request) -> Response:
        _authenticate(request, state)
        path = request.url.path
        match = _PATH.match(path)
        if not match:
            raise odata_error(404, NO_RESOURCE, f"No HTTP resource was found that matches the request URI "
                                                f"'{request.url}'.")
        tenant, env = match.group("tenant"), match.group("env")
        if tenant is not None and tenant != state.tenant_id:
            raise odata_error(404, NO_RESOURCE, f"Tenant '{tenant}' was not found or has no Business Central "
                                                f"environment '{env}'.")
        if env.lower() != state.environment.lower():
            raise odata_error(404, NO_RESOURCE, f"Environment '{env}' was not found for tenant "
                                                f"'{tenant or state.tenant_id}'.")
        segments = match.group("api").strip("/").split("/")
        body = await request.body() if request.method in ("PATCH", "POST", "PUT") else b""
        with state.lock:
            return _dispatch(request, state, build, segments, body)

    return app


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str]:
    """client_id/secret from the form (client_secret_post) or a Basic header (client_secret_basic)."""
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            basic_id, _, basic_secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            basic_id = basic_secret = ""
        client_id, secret = client_id or basic_id, secret or basic_secret
    if not client_id:
        raise entra_error(400, "invalid_request", 900144,
                          "The request body must contain the following parameter: 'client_id'.")
    if not secret:
        raise entra_error(401, "invalid_client", 7000216,
                          "'client_assertion', 'client_secret' or 'request' is required for the "
                          "'client_credentials' grant type.")
    return client_id, secret


def _authenticate(request: Request, state: BusinessCentralState) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, access_token = auth.partition(" ")
    if scheme.lower() != "bearer" or not state.token_is_valid(access_token.strip()):
        state.increment("auth_failures")
        raise odata_error(401, *AUTH_INVALID, headers={
            "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{state.tenant_id}'
                                f'/oauth2/authorize", resource_id="https://api.businesscentral.dynamics.com"'})


def _dispatch(request: Request, state: BusinessCentralState, build: EntityBuilder, segments: list[str],
              body: bytes) -> Response:
    """Route ``api/<...>`` segments to a handler (called under the state lock)."""
    not_found = odata_error(404, NO_RESOURCE,
                            f"No HTTP resource was found that matches the request URI '{request.url}'.")
    if segments[:1] == ["v2.0"]:
        rest = segments[1:]
        api_root = "v2.0"
    elif tuple(segments[:3]) == WRITEBACK_ROUTE:
        rest = segments[3:]
        api_root = "/".join(WRITEBACK_ROUTE)
    else:
        raise not_found
    parsed = [_SEGMENT.match(s) for s in rest]
    if not rest or not all(parsed) or parsed[0].group("name") != "companies":
        raise not_found
    company_key = _key(parsed[0].group("key"))
    context_root = f"{str(request.base_url).rstrip('/')}{request.url.path.split('/api/')[0]}/api/{api_root}/$metadata"

    if api_root == "v2.0" and len(parsed) == 1:
        _only_get(request)
        if company_key is None:
            return _collection(request, state, f"{context_root}#companies", [build.company()],
                               COMPANY_FILTER_FIELDS, "companies", sort_key="name")
        _company(state, company_key)
        return _json({"@odata.context": f"{context_root}#companies/$entity", **build.company()})

    if company_key is None:
        raise not_found
    _company(state, company_key)
    entity_set, entity_key = parsed[1].group("name"), _key(parsed[1].group("key"))
    base_context = f"{context_root}#companies({company_key})/{entity_set}"

    if api_root != "v2.0":
        if entity_set != "salesOrderShipping" or len(parsed) != 2:
            raise not_found
        return _shipping(request, state, build, entity_key, body, base_context)

    if entity_set == "companyInformation" and len(parsed) == 2:
        _only_get(request)
        info = build.company_information()
        if entity_key is None:
            return _json({"@odata.context": base_context, "value": [info]})
        if entity_key != info["id"]:
            raise _record_not_found("Company Information", entity_key)
        return _json({"@odata.context": f"{base_context}/$entity", **info})

    if entity_set == "salesOrders":
        if len(parsed) == 3 and entity_key and parsed[2].group("name") == "salesOrderLines":
            _only_get(request)
            order = _order(state, entity_key)
            lines = build.sales_order(order, {"salesOrderLines"})["salesOrderLines"]
            return _json({"@odata.context": f"{base_context}({entity_key})/salesOrderLines", "value": lines})
        if len(parsed) != 2:
            raise not_found
        if request.method != "GET":
            raise odata_error(405, "BadRequest_MethodNotAllowed",
                              f"The Business Central sandbox serves only GET on salesOrders; write tracking "
                              f"back through /api/{'/'.join(WRITEBACK_ROUTE)}/companies(...)/salesOrderShipping.")
        expand = _expand(request.query_params.get("$expand"))
        select = _select_option(request.query_params.get("$select"))
        if entity_key is not None:
            order = _order(state, entity_key)
            doc = _select(build.sales_order(order, expand), select)
            return _json({"@odata.context": f"{base_context}/$entity", **doc},
                         headers={"ETag": doc["@odata.etag"]})
        docs = [build.sales_order(o, expand) for o in state.orders.values()]
        return _collection(request, state, base_context, docs, SALES_ORDER_FILTER_FIELDS, "salesOrder",
                           sort_key="number", select=select, counter="sales_order_pages_served")

    if entity_set in ("shipmentMethods", "items") and len(parsed) == 2:
        _only_get(request)
        if entity_set == "shipmentMethods":
            docs = [build.shipment_method(m) for m in state.shipment_methods.values()]
            fields, entity, sort_key = SHIPMENT_METHOD_FILTER_FIELDS, "shipmentMethod", "code"
        else:
            docs = [build.item(i) for i in state.items.values()]
            fields, entity, sort_key = ITEM_FILTER_FIELDS, "item", "number"
        if entity_key is not None:
            doc = next((d for d in docs if d["id"] == entity_key), None)
            if doc is None:
                raise _record_not_found(entity, entity_key)
            return _json({"@odata.context": f"{base_context}/$entity", **doc})
        return _collection(request, state, base_context, docs, fields, entity, sort_key=sort_key,
                           select=_select_option(request.query_params.get("$select")))
    raise not_found


def _only_get(request: Request) -> None:
    if request.method != "GET":
        raise odata_error(405, "BadRequest_MethodNotAllowed",
                          f"'{request.method}' requests are not allowed on this resource of the sandbox.")


def _company(state: BusinessCentralState, key: str) -> None:
    if key != state.company["id"].lower():
        raise odata_error(404, COMPANY_NOT_FOUND, f"Cannot process the request because the company with id "
                                                  f"'{key}' cannot be found.")


def _record_not_found(entity: str, key: str) -> VendorError:
    return odata_error(404, RECORD_NOT_FOUND, f"The {entity} does not exist. Identification fields and values: "
                                              f"Id='{key}'")


def _order(state: BusinessCentralState, key: str) -> StoredOrder:
    order = state.find_order(order_id=key)
    if order is None:
        raise _record_not_found("Sales Header", key)
    return order


def _expand(raw: str | None) -> set[str]:
    if not raw:
        return set()
    names = {part.strip() for part in raw.split(",") if part.strip()}
    for name in names:
        if "(" in name or "/" in name:
            raise bad_request(f"The sandbox does not implement nested $expand ('{name}').")
        if name not in SALES_ORDER_NAVIGATION_V2:
            raise bad_request(f"Could not find a property named '{name}' on type 'Microsoft.NAV.salesOrder'.")
        if name not in SALES_ORDER_NAVIGATION:
            raise bad_request(f"The sandbox does not implement $expand={name}; it serves "
                              f"{', '.join(sorted(SALES_ORDER_NAVIGATION))}.")
    return names


def _select_option(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _collection(request: Request, state: BusinessCentralState, context: str, docs: list[dict[str, Any]],
                fields: Mapping[str, FilterField], entity: str, *, sort_key: str,
                select: list[str] | None = None, counter: str | None = None) -> Response:
    """Filter, order (by ``sort_key``, like BC's primary key) and page a collection.

    The ``$skiptoken`` is key-based (the last key served), as BC's are: a record modified between two
    page requests neither repeats nor shifts the rest.
    """
    params = request.query_params
    unsupported = [name for name in params if name.startswith("$") and name not in
                   ("$filter", "$expand", "$select", "$top", "$skip", "$count", "$skiptoken")]
    if unsupported:
        raise bad_request(f"The sandbox does not implement the query option(s) {', '.join(unsupported)}.")
    if params.get("$filter"):
        predicate = parse_filter(params["$filter"], fields, entity)
        docs = [d for d in docs if predicate(d)]
    docs.sort(key=lambda d: d[sort_key])
    count = len(docs)
    token = params.get("$skiptoken")
    if token:
        after, remaining = _decode_skiptoken(token)
        docs = [d for d in docs if d[sort_key] > after]
    else:
        skip = _int_option(params, "$skip") or 0
        remaining = _int_option(params, "$top")
        docs = docs[skip:]
    if remaining is not None:
        docs = docs[:remaining]
    size, headers = _page_size(request, state)
    page, more = docs[:size], len(docs) > size
    body: dict[str, Any] = {"@odata.context": context}
    if params.get("$count", "").lower() == "true":
        body["@odata.count"] = count
    body["value"] = [_select(d, select) for d in page]
    if more:
        left = None if remaining is None else remaining - len(page)
        query = [(k, v) for k, v in params.multi_items() if k not in ("$skiptoken", "$top", "$skip")]
        query.append(("$skiptoken", _encode_skiptoken(page[-1][sort_key], left)))
        body["@odata.nextLink"] = str(request.url.replace(query=urlencode(query, quote_via=quote, safe="$,'()")))
    if counter:
        state.counters[counter] += 1
    return _json(body, headers=headers)


# -- the write-back page ----------------------------------------------------------------------------

_WRITABLE = {"packageTrackingNo": 50, "shippingAgentCode": 10, "shippingAgentServiceCode": 10,
             "mlShipmentStatus": 30, "mlLastTrackingEvent": 100, "mlDeliveredAt": None}
_READ_ONLY = {"id", "number", "lastModifiedDateTime"}


def _shipping(request: Request, state: BusinessCentralState, build: EntityBuilder, key: str | None, body: bytes,
              context: str) -> Response:
    if key is None:
        _only_get(request)
        docs = [build.shipping(o) for o in state.orders.values()]
        return _collection(request, state, context, docs, SHIPPING_FILTER_FIELDS, "salesOrderShipping",
                           sort_key="number", select=_select_option(request.query_params.get("$select")))
    order = _order(state, key)
    if request.method == "GET":
        doc = build.shipping(order)
        return _json({"@odata.context": f"{context}/$entity", **doc}, headers={"ETag": doc["@odata.etag"]})
    if request.method != "PATCH":
        raise odata_error(405, "BadRequest_MethodNotAllowed",
                          f"'{request.method}' requests for 'salesOrderShipping' are not allowed "
                          "(InsertAllowed = false, DeleteAllowed = false).")
    if_match = request.headers.get("if-match", "").strip()
    if not if_match or (if_match != "*" and not _ETAG_SYNTAX.match(if_match)):
        raise odata_error(400, *INVALID_TOKEN)
    changes = _patch_body(body)
    current = build.shipping(order)["@odata.etag"]
    if if_match != "*":
        if state.knobs["etag_conflict_next"] > 0:
            # Another user saved the order between the client's GET and this PATCH.
            state.knobs["etag_conflict_next"] -= 1
            state.touch(order)
            state.counters["etag_conflicts"] += 1
            raise odata_error(412, *ENTITY_CHANGED)
        if if_match != current:
            state.counters["etag_conflicts"] += 1
            raise odata_error(412, *ENTITY_CHANGED)
    _apply_shipping_changes(state, order, changes)
    state.touch(order)
    state.counters["patches"] += 1
    doc = build.shipping(order)
    if "return=minimal" in request.headers.get("prefer", ""):
        return Response(status_code=204, headers={"ETag": doc["@odata.etag"], "OData-Version": "4.0"})
    return _json({"@odata.context": f"{context}/$entity", **doc}, headers={"ETag": doc["@odata.etag"]})


def _patch_body(body: bytes) -> dict[str, Any]:
    try:
        changes = json.loads(body or b"{}")
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(changes, dict):
        raise bad_request("The request body must be a JSON object.")
    changes = {k: v for k, v in changes.items() if not k.startswith("@odata.")}  # clients echo the etag
    for name, value in changes.items():
        if name in _READ_ONLY:
            raise bad_request(f"The property '{name}' is read-only on 'Microsoft.NAV.salesOrderShipping'.")
        if name not in _WRITABLE:
            raise bad_request(f"The property '{name}' does not exist on type 'Microsoft.NAV.salesOrderShipping'. "
                              "Make sure to only use property names that are defined by the type.")
        if not isinstance(value, str):
            raise bad_request(f"Cannot convert a value of type '{type(value).__name__}' to the Edm.String "
                              f"property '{name}'.")
        limit = _WRITABLE[name]
        if limit is not None and len(value) > limit:
            raise odata_error(400, STRING_TOO_LONG, f"The length of the string is {len(value)}, but it must be "
                                                    f"less than or equal to {limit} characters. Value: {value}")
    return changes


def _apply_shipping_changes(state: BusinessCentralState, order: StoredOrder, changes: Mapping[str, str]) -> None:
    """Apply a PATCH in page field order, with the AL page's rules (validate first, then assign)."""
    new = {}
    if "mlDeliveredAt" in changes:
        raw = changes["mlDeliveredAt"]
        try:
            new["delivered"] = (None if raw.startswith("0001-01-01")
                                else _ms(datetime.fromisoformat(raw.replace("Z", "+00:00"))))
        except ValueError:
            raise bad_request(f"Cannot convert the literal '{raw}' to the expected type 'Edm.DateTimeOffset'.") \
                from None
        if new["delivered"] is not None and new["delivered"].tzinfo is None:
            raise bad_request(f"Cannot convert the literal '{raw}' to the expected type 'Edm.DateTimeOffset'.")
    agent = order.shipping_agent_code
    service = order.shipping_agent_service_code
    if "shippingAgentCode" in changes:
        code = changes["shippingAgentCode"].strip().upper()  # Code fields are upper-cased by BC
        if code and code not in state.shipping_agents:
            raise odata_error(400, DIALOG, f"Shipping Agent {code} does not exist in company "
                                           f"{state.company['name']}. Create it on the Shipping Agents page or "
                                           "change the connector's shipping_agent_code setting.")
        if code != agent:
            service = ""  # a service belongs to its agent
        agent = code
    if "shippingAgentServiceCode" in changes:
        code = changes["shippingAgentServiceCode"].strip().upper()
        if code and code not in state.shipping_agents.get(agent, set()):
            raise odata_error(400, DIALOG, f"Shipping Agent Service {code} does not exist for Shipping Agent "
                                           f"{agent}. Create it on the Shipping Agent Services page or change "
                                           "the connector's service mapping.")
        service = code
    # Validation passed: the record is modified all at once, as the page's Modify does.
    order.shipping_agent_code, order.shipping_agent_service_code = agent, service
    if "packageTrackingNo" in changes:
        order.package_tracking_no = changes["packageTrackingNo"]
    if "mlShipmentStatus" in changes:
        order.ml_shipment_status = changes["mlShipmentStatus"]
    if "mlLastTrackingEvent" in changes:
        order.ml_last_tracking_event = changes["mlLastTrackingEvent"]
    if "delivered" in new:
        order.ml_delivered_at = new["delivered"]
