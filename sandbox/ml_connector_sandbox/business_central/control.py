"""Business Central control endpoints under ``/_sandbox/business_central/`` (no auth, never delayed or throttled).

- ``POST touch``: set an order's ``lastModifiedDateTime`` (default now) and optionally its API status;
- ``GET orders``: every order with its API status and write-back fields, for assertions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.sales_orders import SALES_ORDER_FILTER_FIELDS
from ml_connector_sandbox.business_central.state import BusinessCentralState
from ml_connector_sandbox.common import CONTROL_PREFIX

VENDOR = "business_central"
CONTROL_VENDOR_PREFIX = f"{CONTROL_PREFIX}/{VENDOR}"


def router(state: BusinessCentralState, build: EntityBuilder) -> APIRouter:
    """``/_sandbox/business_central/...``: move orders in time, list them."""
    api = APIRouter(prefix=CONTROL_VENDOR_PREFIX, tags=["sandbox control"])

    @api.post("/touch")
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

    async def touch_records(request: Request, kind: str, records: dict, modified: dict) -> JSONResponse:
        """Set records' lastModifiedDateTime (``{"numbers": [...], "modified_at": iso}``; default all, now)."""
        body = await request.json()
        at = datetime.fromisoformat(str(body.get("modified_at") or state.now().isoformat()).replace("Z", "+00:00"))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        with state.lock:
            numbers = body.get("numbers") or list(records)
            unknown = [n for n in numbers if n not in records]
            if unknown:
                return JSONResponse({"error": f"no {kind} {unknown}"}, status_code=404)
            for number in numbers:
                modified[number] = at
        return JSONResponse({"touched": numbers})

    @api.post("/items/touch")
    async def touch_items(request: Request) -> JSONResponse:
        """Set items' lastModifiedDateTime (``{"numbers": [...], "modified_at": iso}``; default all, now)."""
        return await touch_records(request, "items", state.items, state.item_modified)

    @api.post("/customers/touch")
    async def touch_customers(request: Request) -> JSONResponse:
        """Set customers' lastModifiedDateTime (``{"numbers": [...], "modified_at": iso}``; default all, now)."""
        return await touch_records(request, "customers", state.customers, state.customer_modified)

    @api.get("/invoices")
    def invoices_overview() -> list[dict[str, Any]]:
        """Every sales invoice with its lines (for assertions; no auth)."""
        with state.lock:
            return [dict(i) for i in sorted(state.invoices.values(), key=lambda i: i["number"])]

    @api.get("/orders")
    def orders_overview() -> list[dict[str, Any]]:
        """Every order with its API status and write-back fields (for assertions; no auth)."""
        with state.lock:
            return [{"status": o.status, **build.shipping(o)}
                    for o in sorted(state.orders.values(), key=lambda o: o.number)]

    return api
