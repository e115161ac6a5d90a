"""Sales orders in API v2.0 (read-only): ``salesOrders`` with ``$filter``, ``$expand=salesOrderLines,shipmentMethod``,
``$select``, ``$top``, ``$skip``, ``$count`` and server-driven paging, one order, and its ``salesOrderLines``.

``status eq 'Open'`` means *Released*; BC-open orders are ``Draft``. Writing tracking back goes through the
ml-connector page (:mod:`.writeback`), never through salesOrders.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ml_connector_sandbox.business_central.companies import COMPANY, check_company
from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.errors import bad_request, method_not_allowed
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
from ml_connector_sandbox.business_central.state import BusinessCentralState
from ml_connector_sandbox.business_central.writeback import WRITEBACK_ROUTE

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
        with state.lock:
            company_key = check_company(state, company)
            if request.method != "GET":
                raise method_not_allowed(
                    f"The Business Central sandbox serves only GET on salesOrders; write tracking "
                    f"back through /api/{'/'.join(WRITEBACK_ROUTE)}/companies(...)/salesOrderShipping.")
            context = f"{context_root(request, 'v2.0')}#companies({company_key})/salesOrders"
            expand = expand_option(request.query_params.get("$expand"))
            select = select_option(request.query_params.get("$select"))
            if key is not None:
                doc = select_fields(build.sales_order(state.order_or_404(entity_key(key)), expand), select)
                return json_response({"@odata.context": f"{context}/$entity", **doc},
                                     headers={"ETag": doc["@odata.etag"]})
            docs = [build.sales_order(o, expand) for o in state.orders.values()]
            return collection(request, state, context, docs, SALES_ORDER_FILTER_FIELDS, "salesOrder",
                              sort_key="number", select=select, counter="sales_order_pages_served")

    add_route(api, f"{COMPANY}/salesOrders", sales_orders)
    add_route(api, f"{COMPANY}/salesOrders({{key}})", sales_orders)

    async def sales_order_lines(company: str, key: str, request: Request) -> Response:
        with state.lock:
            company_key = check_company(state, company)
            only_get(request)
            order_key = entity_key(key)
            lines = build.sales_order(state.order_or_404(order_key), {"salesOrderLines"})["salesOrderLines"]
            return json_response({"@odata.context": f"{context_root(request, 'v2.0')}#companies({company_key})"
                                                    f"/salesOrders({order_key})/salesOrderLines", "value": lines})

    add_route(api, f"{COMPANY}/salesOrders({{key}})/salesOrderLines", sales_order_lines)
    return api
