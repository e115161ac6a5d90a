"""The ml-connector write-back page: ``/api/mlconnector/shipping/v1.0/companies({id})/salesOrderShipping``.

The custom API page of ``ml_connector/erp/business_central/al`` (GET, PATCH with ``If-Match``; no insert,
no delete). Its ``@odata.etag`` is its own (GET it before PATCH; the salesOrders etag gives 412), and a
successful PATCH also moves the order's ``lastModifiedDateTime``, so the next poll sees the order again.
``If-Match: *`` is accepted as BC does (it skips the concurrency check and the ``etag_conflict_next``
knob); the connector should not use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ml_connector_sandbox.business_central.companies import check_company
from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.errors import (
    DIALOG,
    ENTITY_CHANGED,
    INVALID_TOKEN,
    STRING_TOO_LONG,
    bad_request,
    method_not_allowed,
    odata_error,
)
from ml_connector_sandbox.business_central.odata import (
    ETAG_SYNTAX,
    FilterField,
    add_route,
    collection,
    context_root,
    entity_key,
    json_response,
    ms,
    only_get,
    select_option,
)
from ml_connector_sandbox.business_central.state import BusinessCentralState, StoredOrder

#: APIPublisher / APIGroup / APIVersion of the page (the hook's ``writeback_api_*`` extras default to these).
WRITEBACK_ROUTE = ("mlconnector", "shipping", "v1.0")
SHIPPING_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"),
    "number": FilterField("string"),
    "packageTrackingNo": FilterField("string"),
    "mlShipmentStatus": FilterField("string"),
    "lastModifiedDateTime": FilterField("datetime"),
}
#: Writable fields and their Text lengths (None: a DateTime).
WRITABLE_FIELDS = {"packageTrackingNo": 50, "shippingAgentCode": 10, "shippingAgentServiceCode": 10,
                   "mlShipmentStatus": 30, "mlLastTrackingEvent": 100, "mlDeliveredAt": None}
_READ_ONLY = {"id", "number", "lastModifiedDateTime"}


def router(state: BusinessCentralState, build: EntityBuilder) -> APIRouter:
    """The page's routes, relative to ``/v2.0/{tenant}/{environment}/api``."""
    api = APIRouter(tags=["salesOrderShipping (ml-connector AL page)"])
    base = "/" + "/".join(WRITEBACK_ROUTE) + "/companies({company})/salesOrderShipping"

    async def shipping(company: str, request: Request) -> Response:
        key = request.path_params.get("key")
        body = await request.body() if request.method in ("PATCH", "POST", "PUT") else b""
        with state.lock:
            company_key = check_company(state, company)
            context = (f"{context_root(request, '/'.join(WRITEBACK_ROUTE))}"
                       f"#companies({company_key})/salesOrderShipping")
            if key is None:
                only_get(request)
                docs = [build.shipping(o) for o in state.orders.values()]
                return collection(request, state, context, docs, SHIPPING_FILTER_FIELDS, "salesOrderShipping",
                                  sort_key="number", select=select_option(request.query_params.get("$select")))
            return _one_record(request, state, build, state.order_or_404(entity_key(key)), body, context)

    add_route(api, base, shipping)
    add_route(api, base + "({key})", shipping, documented=("GET", "PATCH"))
    return api


def _one_record(request: Request, state: BusinessCentralState, build: EntityBuilder, order: StoredOrder,
                body: bytes, context: str) -> Response:
    """GET or PATCH one record of the page (called under the state lock)."""
    if request.method == "GET":
        doc = build.shipping(order)
        return json_response({"@odata.context": f"{context}/$entity", **doc}, headers={"ETag": doc["@odata.etag"]})
    if request.method != "PATCH":
        raise method_not_allowed(f"'{request.method}' requests for 'salesOrderShipping' are not allowed "
                                 "(InsertAllowed = false, DeleteAllowed = false).")
    if_match = request.headers.get("if-match", "").strip()
    if not if_match or (if_match != "*" and not ETAG_SYNTAX.match(if_match)):
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
    return json_response({"@odata.context": f"{context}/$entity", **doc}, headers={"ETag": doc["@odata.etag"]})


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
        if name not in WRITABLE_FIELDS:
            raise bad_request(f"The property '{name}' does not exist on type 'Microsoft.NAV.salesOrderShipping'. "
                              "Make sure to only use property names that are defined by the type.")
        if not isinstance(value, str):
            raise bad_request(f"Cannot convert a value of type '{type(value).__name__}' to the Edm.String "
                              f"property '{name}'.")
        limit = WRITABLE_FIELDS[name]
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
                                else ms(datetime.fromisoformat(raw.replace("Z", "+00:00"))))
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
