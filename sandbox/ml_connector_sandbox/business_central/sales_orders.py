"""Sales orders in API v2.0: ``salesOrders`` with ``$filter``, ``$expand=salesOrderLines,shipmentMethod``,
``$select``, ``$top``, ``$skip``, ``$count`` and server-driven paging, one order, and its ``salesOrderLines``.

``status eq 'Open'`` means *Released*; BC-open orders are ``Draft``. Writing tracking back to released orders goes
through the ml-connector page (:mod:`.writeback`), never through salesOrders.

Writes (the ShipStation pipeline's ``document: sales_order``), as API v2.0 allows them:

* ``POST salesOrders`` with ``salesOrderLines`` (deep insert) creates a ``Draft`` order; ``customerId`` (or
  ``customerNumber``) and every item line's ``itemId`` (or ``lineObjectNumber``) must exist (BC's 400 otherwise);
  ``externalDocumentNumber`` is Code[35], a line ``description`` Text[100].
* ``PATCH salesOrders({id})`` needs ``If-Match`` (400 without, 412 when stale) and changes header fields of a
  ``Draft`` only (a released order answers BC's "Status must be equal to 'Open'" 400).
* ``salesOrders({id})/salesOrderLines``: ``POST`` adds a line, ``DELETE salesOrderLines({lineId})`` removes one
  (``Draft`` orders only); ``DELETE salesOrders({id})`` deletes a ``Draft``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ml_connector_sandbox.business_central.companies import COMPANY, check_company
from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.errors import (
    ENTITY_CHANGED,
    INVALID_TOKEN,
    bad_request,
    method_not_allowed,
    odata_error,
    record_not_found,
)
from ml_connector_sandbox.business_central.odata import (
    FilterField,
    add_route,
    collection,
    context_root,
    entity_key,
    json_response,
    only_get,
    select_fields,
    select_option,
)
from ml_connector_sandbox.business_central.state import BusinessCentralState, StoredOrder
from ml_connector_sandbox.business_central.writeback import WRITEBACK_ROUTE

#: header fields a POST or PATCH may set (BC name -> key of the stored ship-to, or None for a header key)
WRITABLE_HEADER = {"externalDocumentNumber": None, "orderDate": None, "phoneNumber": None, "email": None,
                   "shipmentMethodId": None, "shipToName": "name", "shipToContact": "contact",
                   "shipToAddressLine1": "addressLine1", "shipToAddressLine2": "addressLine2", "shipToCity": "city",
                   "shipToState": "state", "shipToPostCode": "postCode", "shipToCountry": "country"}
READ_ONLY_HEADER = {"id", "number", "status", "customerName", "customerId", "customerNumber", "lastModifiedDateTime",
                    "totalAmountExcludingTax", "totalAmountIncludingTax", "totalTaxAmount", "fullyShipped",
                    "@odata.etag", "@odata.context"}
LINE_TYPES = ("Comment", "Account", "Item", "Resource", "Fixed Asset", "Charge")

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
#: Navigation properties the sandbox expands, and those API v2.0 has but the sandbox does not serve.
SALES_ORDER_NAVIGATION = {"salesOrderLines", "shipmentMethod", "customer"}
SALES_ORDER_NAVIGATION_V2 = SALES_ORDER_NAVIGATION | {
    "currency", "paymentTerm", "dimensionSetLines", "pdfDocument", "attachments", "documentAttachments"}


def expand_option(raw: str | None) -> set[str]:
    """The ``$expand`` query option, checked against what API v2.0 and the sandbox serve."""
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


def router(state: BusinessCentralState, build: EntityBuilder) -> APIRouter:
    """The routes of this module, relative to ``/v2.0/{tenant}/{environment}/api``."""
    api = APIRouter(tags=["salesOrders"])

    async def sales_orders(company: str, request: Request) -> Response:
        key = request.path_params.get("key")
        body = await request.json() if request.method in ("POST", "PATCH") and await request.body() else {}
        with state.lock:
            company_key = check_company(state, company)
            context = f"{context_root(request, 'v2.0')}#companies({company_key})/salesOrders"
            if request.method == "POST" and key is None:
                order = create_order(state, body)
                doc = build.sales_order(order, {"salesOrderLines"})
                return json_response({"@odata.context": f"{context}/$entity", **doc}, status=201,
                                     headers={"ETag": doc["@odata.etag"]})
            if request.method == "PATCH" and key is not None:
                order = state.order_or_404(entity_key(key))
                check_etag(request, build.sales_order(order)["@odata.etag"])
                check_draft(order)
                set_header(state, order, body)
                state.touch(order)
                state.increment("sales_orders_patched")
                doc = build.sales_order(order)
                return json_response({"@odata.context": f"{context}/$entity", **doc},
                                     headers={"ETag": doc["@odata.etag"]})
            if request.method == "DELETE" and key is not None:
                order = state.order_or_404(entity_key(key))
                check_draft(order)
                state.orders.pop(order.id)
                return Response(status_code=204)
            if request.method != "GET":
                raise method_not_allowed(
                    f"'{request.method}' requests are not allowed on this resource; write tracking back to released "
                    f"orders through /api/{'/'.join(WRITEBACK_ROUTE)}/companies(...)/salesOrderShipping.")
            expand = expand_option(request.query_params.get("$expand"))
            select = select_option(request.query_params.get("$select"))
            if key is not None:
                doc = select_fields(build.sales_order(state.order_or_404(entity_key(key)), expand), select)
                return json_response({"@odata.context": f"{context}/$entity", **doc},
                                     headers={"ETag": doc["@odata.etag"]})
            docs = [build.sales_order(o, expand) for o in state.orders.values()]
            return collection(request, state, context, docs, SALES_ORDER_FILTER_FIELDS, "salesOrder",
                              sort_key="number", select=select, counter="sales_order_pages_served")

    add_route(api, f"{COMPANY}/salesOrders", sales_orders, documented=("GET", "POST"))
    add_route(api, f"{COMPANY}/salesOrders({{key}})", sales_orders, documented=("GET", "PATCH", "DELETE"))

    async def sales_order_lines(company: str, key: str, request: Request) -> Response:
        line_key = request.path_params.get("line")
        body = await request.json() if request.method == "POST" and await request.body() else {}
        with state.lock:
            company_key = check_company(state, company)
            order_key = entity_key(key)
            if request.method in ("POST", "DELETE"):
                order = state.order_or_404(order_key or "")
                check_draft(order)
                if request.method == "POST" and line_key is None:
                    sequence = max([int(x.get("sequence") or (n + 1) * 10000)
                                    for n, x in enumerate(order.seed["lines"])] or [0]) + 10000
                    order.seed["lines"].append({**stored_line(state, body), "sequence": sequence})
                    state.touch(order)
                    line = next(x for x in build.sales_order(order, {"salesOrderLines"})["salesOrderLines"]
                                if x["sequence"] == sequence)
                    return json_response(line, status=201)
                if request.method == "DELETE" and line_key is not None:
                    wanted = entity_key(line_key)
                    ids = [x["id"] for x in build.sales_order(order, {"salesOrderLines"})["salesOrderLines"]]
                    if wanted not in ids:
                        raise record_not_found("Sales Line", wanted or "")
                    del order.seed["lines"][ids.index(wanted)]
                    state.touch(order)
                    return Response(status_code=204)
            only_get(request)
            lines = build.sales_order(state.order_or_404(order_key), {"salesOrderLines"})["salesOrderLines"]
            return json_response({"@odata.context": f"{context_root(request, 'v2.0')}#companies({company_key})"
                                                    f"/salesOrders({order_key})/salesOrderLines", "value": lines})

    add_route(api, f"{COMPANY}/salesOrders({{key}})/salesOrderLines", sales_order_lines, documented=("GET", "POST"))
    add_route(api, f"{COMPANY}/salesOrders({{key}})/salesOrderLines({{line}})", sales_order_lines,
              documented=("DELETE",))
    return api


# -- writes ----------------------------------------------------------------------------------------------------

def check_etag(request: Request, current: str) -> None:
    """``If-Match`` is required (BC's 400 without) and must be current (412) or ``*``."""
    given = request.headers.get("If-Match")
    if not given:
        raise odata_error(400, *INVALID_TOKEN)
    if given not in ("*", current):
        raise odata_error(412, *ENTITY_CHANGED)


def check_draft(order: StoredOrder) -> None:
    """Only a BC-open order (API ``Draft``) can be changed: a released one answers BC's status error."""
    if order.status != "Draft":
        raise bad_request(f"Status must be equal to 'Open'  in Sales Header: Document Type=Order, No.={order.number}. "
                          f"Current value is 'Released'.")


def stored_line(state: BusinessCentralState, body: dict[str, Any]) -> dict[str, Any]:
    """A line as the store keeps it (``item`` number), checked as BC does."""
    line_type = body.get("lineType", "Item")
    if line_type not in LINE_TYPES:
        raise bad_request(f"The value '{line_type}' is not valid for lineType.")
    description = str(body.get("description") or "")
    if len(description) > 100:
        raise odata_error(400, "Application_StringExceededLength", f"The length of the string is {len(description)}, "
                          "but it must be less than or equal to 100 characters.")
    line: dict[str, Any] = {"lineType": line_type}
    if description:
        line["description"] = description
    if line_type == "Item":
        wanted = str(body.get("itemId") or "").lower()
        item = next((i for i in state.items.values()
                     if i["id"] == wanted or (not wanted and i["number"] == body.get("lineObjectNumber"))), None)
        if item is None:
            raise bad_request("The Item does not exist. Identification fields and values: "
                              f"Id='{wanted or body.get('lineObjectNumber')}'")
        line.update(item=item["number"], quantity=float(body.get("quantity") or 0),
                    unitPrice=float(body.get("unitPrice", item["unitPrice"]) or 0))
    return line


def set_header(state: BusinessCentralState, order: StoredOrder, body: dict[str, Any]) -> None:
    for field, value in body.items():
        if field in READ_ONLY_HEADER or field == "salesOrderLines":
            if field in ("customerId", "customerNumber", "salesOrderLines") or field.startswith("@"):
                continue  # POST only (checked there) / navigation
            raise bad_request(f"The property '{field}' is read-only.")
        if field not in WRITABLE_HEADER:
            raise bad_request(f"The sandbox does not let salesOrders set '{field}'.")
        text = str(value or "")
        if field == "externalDocumentNumber" and len(text) > 35:
            raise odata_error(400, "Application_StringExceededLength", f"The length of the string is {len(text)}, "
                              "but it must be less than or equal to 35 characters.")
        if WRITABLE_HEADER[field]:
            order.seed["shipTo"][WRITABLE_HEADER[field]] = text
        elif field == "shipmentMethodId":
            method = next((m for m in state.shipment_methods.values() if m["id"] == text.lower()), None)
            order.seed["shipmentMethod"] = method["code"] if method else ""
        else:
            order.seed[field] = text


def create_order(state: BusinessCentralState, body: dict[str, Any]) -> StoredOrder:
    """``POST salesOrders`` (deep insert): a ``Draft`` order with its lines."""
    customer = next((c for c in state.customers.values()
                     if c["id"] == str(body.get("customerId") or "").lower()
                     or (not body.get("customerId") and c["number"] == body.get("customerNumber"))), None)
    if customer is None:
        raise bad_request("The Customer does not exist. Identification fields and values: "
                          f"Id='{body.get('customerId') or body.get('customerNumber')}'")
    lines = [stored_line(state, line) for line in body.get("salesOrderLines") or []]
    state.sales_order_seq += 1
    order_id = str(uuid.uuid4())
    now = state.now()
    seed: dict[str, Any] = {
        "id": order_id, "number": f"S-ORD{state.sales_order_seq}", "status": "Draft", "customer": customer["number"],
        "shipmentMethod": "", "modified_minutes_ago": 0, "externalDocumentNumber": "", "orderDate":
        now.date().isoformat(), "shipTo": {"name": customer["name"], "contact": "", "addressLine1": "",
                                          "addressLine2": "", "city": "", "state": "", "postCode": "", "country": ""},
        "phoneNumber": "", "email": "", "lines": [{**line, "sequence": (n + 1) * 10000} for n, line in enumerate(lines)]}
    order = StoredOrder(seed=seed, status="Draft", modified_at=now, version=state.next_rowversion())
    set_header(state, order, body)
    state.touch(order)
    state.orders[order_id] = order
    state.increment("sales_orders_created")
    return order

