"""The ShipStation sandbox app: v1 (Basic auth, rate-limit headers, Pacific times) and v2 labels (API-Key)."""

from __future__ import annotations

import base64
import binascii
import copy
import logging
import math
import threading
from datetime import UTC, datetime
from typing import Any

import requests
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector_sandbox.common import CONTROL_PREFIX, install_sandbox
from ml_connector_sandbox.credentials import (
    SHIPSTATION_API_KEY,
    SHIPSTATION_API_SECRET,
    SHIPSTATION_V2_API_KEY,
)
from ml_connector_sandbox.shipstation.state import ShipStationState, pacific_text, parse_pacific

log = logging.getLogger(__name__)
CONTROL = f"{CONTROL_PREFIX}/shipstation"
UPDATABLE = {"awaiting_payment", "awaiting_shipment", "on_hold"}
REQUIRED_PRODUCT_FIELDS = ("productId", "sku", "name")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"Message": message, "ExceptionMessage": message}, status_code=status, headers=headers)


def _basic_ok(header: str | None) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return (user, password) == (SHIPSTATION_API_KEY, SHIPSTATION_API_SECRET)


def create_app(state: ShipStationState | None = None) -> FastAPI:
    state = state or ShipStationState()
    app = FastAPI(title="ShipStation sandbox (ml-connector)", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    install_sandbox(app, state)

    @app.middleware("http")
    async def v1_gate(request: Request, call_next):
        """v1 routes: Basic auth (401), then the per-key window (429 with headers), headers on every answer."""
        path = request.url.path
        if path.startswith(("/_sandbox", "/v2/")):
            return await call_next(request)
        if not _basic_ok(request.headers.get("Authorization")):
            state.increment("auth_failures")
            return JSONResponse({"Message": "Authorization has been denied for this request."}, status_code=401)
        allowed, headers = state.take_call()
        if not allowed:
            return _error(429, "Too Many Requests", headers)
        response = await call_next(request)
        response.headers.update(headers)
        return response

    app.include_router(v1_router(state))
    app.include_router(v2_router(state))
    app.include_router(control_router(state))
    return app


def _page(records: list[dict[str, Any]], key: str, request: Request) -> dict[str, Any]:
    page = max(int(request.query_params.get("page") or 1), 1)
    size = min(max(int(request.query_params.get("pageSize") or 100), 1), 500)
    pages = max(math.ceil(len(records) / size), 1)
    return {key: records[(page - 1) * size: page * size], "total": len(records), "page": page, "pages": pages}


def _between(text: str | None, start: str | None, end: str | None) -> bool:
    """v1 date filters compare Pacific clock times (no offset anywhere)."""
    if not text:
        return start is None and end is None
    at = parse_pacific(text)
    return (start is None or at >= parse_pacific(start)) and (end is None or at <= parse_pacific(end))


def v1_router(state: ShipStationState) -> APIRouter:
    api = APIRouter(tags=["v1"])

    @api.get("/orders")
    def list_orders(request: Request) -> dict[str, Any]:
        q = request.query_params
        with state.lock:
            state.order_queries.append({k: q[k] for k in ("orderStatus", "modifyDateStart", "importBatch") if k in q})
            wanted = state.batches.get(q.get("importBatch") or "") if q.get("importBatch") else None
            orders = [o for o in state.orders.values()
                      if (wanted is None or o["orderId"] in wanted)
                      and (not q.get("orderStatus") or o.get("orderStatus") == q["orderStatus"])
                      and (not q.get("orderNumber") or str(o.get("orderNumber", "")).startswith(q["orderNumber"]))
                      and _between(o.get("modifyDate"), q.get("modifyDateStart"), q.get("modifyDateEnd"))]
            return _page(copy.deepcopy(sorted(orders, key=lambda o: o["orderId"])), "orders", request)

    @api.get("/orders/{order_id}")
    def get_order(order_id: int) -> Any:
        with state.lock:
            order = state.orders.get(order_id)
            return copy.deepcopy(order) if order else _error(404, f"Order {order_id} not found")

    @api.post("/orders/createorder")
    async def create_order(request: Request) -> Any:
        body = await request.json()
        for field in ("orderNumber", "orderDate", "orderStatus"):
            if not body.get(field):
                return _error(400, f"The {field} field is required.")
        with state.lock:
            existing = next((o for o in state.orders.values() if body.get("orderKey")
                             and o.get("orderKey") == body["orderKey"]), None)
            if existing is not None and existing.get("orderStatus") not in UPDATABLE:
                return _error(400, f"Order {existing['orderNumber']} is {existing['orderStatus']} and cannot be "
                                   "updated.")
            return state.save_order(body)

    @api.get("/shipments")
    def list_shipments(request: Request) -> dict[str, Any]:
        q = request.query_params
        items = (q.get("includeShipmentItems") or "false").lower() == "true"
        with state.lock:
            wanted = state.batches.get(q.get("batchId") or "") if q.get("batchId") else None
            shipments = []
            for s in sorted(state.shipments.values(), key=lambda s: s["shipmentId"]):
                if wanted is not None and s["shipmentId"] not in wanted:
                    continue
                if q.get("orderId") and str(s["orderId"]) != q["orderId"]:
                    continue
                if not _between(s["createDate"], q.get("createDateStart"), q.get("createDateEnd")):
                    continue
                shipment = copy.deepcopy(s)
                if not items:
                    shipment["shipmentItems"] = None
                shipments.append(shipment)
            return _page(shipments, "shipments", request)

    @api.get("/products")
    def list_products(request: Request) -> dict[str, Any]:
        q = request.query_params
        with state.lock:
            products = [p for p in state.products.values()
                        if (not q.get("sku") or q["sku"].lower() in str(p.get("sku") or "").lower())
                        and (p.get("active") or (q.get("showInactive") or "").lower() == "true")]
            return _page(copy.deepcopy(products), "products", request)

    @api.get("/products/{product_id}")
    def get_product(product_id: int) -> Any:
        with state.lock:
            product = state.products.get(product_id)
            return copy.deepcopy(product) if product else _error(404, f"Product {product_id} not found")

    @api.put("/products/{product_id}")
    async def update_product(product_id: int, request: Request) -> Any:
        body = await request.json()
        with state.lock:
            if product_id not in state.products:
                return _error(404, f"Product {product_id} not found")
            missing = [f for f in REQUIRED_PRODUCT_FIELDS if body.get(f) in (None, "")]
            if missing or body.get("productId") != product_id:
                return _error(400, f"The request is invalid: {', '.join(missing) or 'productId'} required")
            old = state.products[product_id]
            # no partial update: every field not sent is cleared
            product = {key: body.get(key) for key in old}
            product["createDate"], product["modifyDate"] = old["createDate"], pacific_text(state.now())
            state.products[product_id] = product
            state.counters["product_puts"] += 1
            return {"success": True, "message": "The requested product has been updated"}

    @api.get("/customers")
    def list_customers(request: Request) -> dict[str, Any]:
        """Read-only, as in v1 (list and get; no create or update): customers come from imported orders."""
        q = request.query_params
        with state.lock:
            customers = [c for c in sorted(state.customers.values(), key=lambda c: c["customerId"])
                         if (not q.get("stateCode") or c.get("state") == q["stateCode"])
                         and (not q.get("countryCode") or c.get("countryCode") == q["countryCode"])]
            return _page(copy.deepcopy(customers), "customers", request)

    @api.get("/customers/{customer_id}")
    def get_customer(customer_id: int) -> Any:
        with state.lock:
            customer = state.customers.get(customer_id)
            return copy.deepcopy(customer) if customer else _error(404, f"Customer {customer_id} not found")

    @api.get("/webhooks")
    def list_webhooks() -> dict[str, Any]:
        with state.lock:
            return {"webhooks": [copy.deepcopy(w) for w in state.webhooks.values()]}

    @api.post("/webhooks/subscribe")
    async def subscribe(request: Request) -> Any:
        body = await request.json()
        if not body.get("target_url") or body.get("event") not in (
                "ORDER_NOTIFY", "ITEM_ORDER_NOTIFY", "SHIP_NOTIFY", "ITEM_SHIP_NOTIFY", "FULFILLMENT_SHIPPED",
                "FULFILLMENT_REJECTED"):
            return _error(400, "target_url and a known event are required")
        with state.lock:
            hook_id = state.next_id()
            state.webhooks[hook_id] = {"WebHookID": hook_id, "HookType": body["event"], "Url": body["target_url"],
                                       "Name": body.get("friendly_name"), "StoreID": body.get("store_id"),
                                       "Active": True}
            return JSONResponse({"id": hook_id}, status_code=201)

    @api.delete("/webhooks/{hook_id}")
    def unsubscribe(hook_id: int) -> Response:
        with state.lock:
            if state.webhooks.pop(hook_id, None) is None:
                return _error(404, f"Webhook {hook_id} not found")
        return Response(status_code=200)

    return api


def v2_router(state: ShipStationState) -> APIRouter:
    api = APIRouter(tags=["v2"])

    @api.post("/v2/labels")
    async def create_label(request: Request) -> Any:
        if request.headers.get("API-Key") != SHIPSTATION_V2_API_KEY:
            return JSONResponse({"request_id": "sandbox", "errors": [
                {"error_source": "shipstation", "error_type": "security", "error_code": "unauthorized",
                 "message": "The API key is invalid. Please see https://www.shipstation.com/docs/api"}]},
                status_code=401)
        body = await request.json()
        shipment = body.get("shipment") if isinstance(body, dict) else None
        problems = []
        if not isinstance(shipment, dict):
            problems.append("$.shipment is required")
        else:
            for field in ("service_code", "ship_to", "ship_from", "packages"):
                if not shipment.get(field):
                    problems.append(f"$.shipment.{field} is required")
        if problems:
            state.record_validation_error("POST /v2/labels", problems)
            return JSONResponse({"request_id": "sandbox", "errors": [
                {"error_source": "shipstation", "error_type": "validation", "error_code": "invalid_field_value",
                 "message": p} for p in problems]}, status_code=400)
        with state.lock:
            label_id = f"se-{state.next_id()}"
            tracking = f"9400{state.next_id():018d}"
            label = {"label_id": label_id, "status": "completed", "shipment_id": f"se-{state.next_id()}",
                     "tracking_number": tracking, "service_code": shipment["service_code"],
                     "carrier_code": shipment.get("carrier_code") or "stamps_com",
                     "created_at": state.now().isoformat(), "voided": False,
                     "label_download": {"pdf": f"https://api.shipstation.com/v2/downloads/{label_id}.pdf"}}
            state.labels[label_id] = label
            state.counters["labels_created"] += 1
        return JSONResponse(label, status_code=200)

    return api


def _notify(state: ShipStationState, event: str, resource_url: str) -> list[dict[str, Any]]:
    """Send ``{"resource_url", "resource_type"}`` to every subscribed URL of ``event`` (background), and return
    the payloads (tests deliver them themselves)."""
    payload = {"resource_url": resource_url, "resource_type": event}
    with state.lock:
        targets = [w["Url"] for w in state.webhooks.values() if w["HookType"] == event]

    def send() -> None:
        for url in targets:
            try:
                requests.post(url, json=payload, timeout=5)
                state.increment("webhooks_sent")
            except requests.RequestException as exc:
                log.warning("sandbox webhook to %s failed: %s", url, exc)

    if targets:
        threading.Thread(target=send, daemon=True).start()
    return [payload]


def control_router(state: ShipStationState) -> APIRouter:
    """``/_sandbox/shipstation/...``: create/edit/ship orders (ORDER_NOTIFY / SHIP_NOTIFY), move them in time,
    read products."""
    api = APIRouter(prefix=CONTROL, tags=["sandbox control"])

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @api.post("/orders")
    async def put_order(request: Request) -> dict[str, Any]:
        """Create or replace an order (by orderKey) as a store import would; answers it and ORDER_NOTIFY."""
        body = await request.json()
        at = body.pop("_modified_at", None)
        order = state.save_order(body, at=datetime.fromisoformat(at) if at else None)
        batch = state.batch([order["orderId"]])
        return {"order": order, "webhooks": _notify(state, "ORDER_NOTIFY",
                                                    f"{base(request)}/orders?importBatch={batch}")}

    @api.post("/orders/{order_id}/ship")
    async def ship(order_id: int, request: Request) -> Any:
        """Mark shipped; with ``label`` (default true) a label shipment with a tracking number is created."""
        body = await request.json() if await request.body() else {}
        with state.lock:
            order = state.orders.get(order_id)
            if order is None:
                return JSONResponse({"error": f"no order {order_id}"}, status_code=404)
            at = datetime.fromisoformat(body["_modified_at"]) if body.get("_modified_at") else state.now()
            order["orderStatus"] = "shipped"
            order["modifyDate"] = pacific_text(at)
            order["carrierCode"] = body.get("carrierCode", "ups")
            order["serviceCode"] = body.get("serviceCode", "ups_ground")
            shipment = None
            if body.get("label", True):
                sid = state.next_id()
                shipment = {"shipmentId": sid, "orderId": order_id, "orderKey": order["orderKey"],
                            "orderNumber": order["orderNumber"], "createDate": pacific_text(at),
                            "shipDate": pacific_text(at)[:10], "trackingNumber": body.get("trackingNumber",
                                                                                          f"1ZSS{sid:012d}"),
                            "carrierCode": order["carrierCode"], "serviceCode": order["serviceCode"],
                            "voided": False, "shipmentItems": copy.deepcopy(order.get("items") or [])}
                state.shipments[sid] = shipment
            result = {"order": copy.deepcopy(order), "shipment": copy.deepcopy(shipment)}
        if shipment is not None:
            batch = state.batch([shipment["shipmentId"]])
            result["webhooks"] = _notify(state, "SHIP_NOTIFY",
                                         f"{base(request)}/shipments?batchId={batch}&includeShipmentItems=False")
        else:
            batch = state.batch([order_id])
            result["webhooks"] = _notify(state, "ORDER_NOTIFY", f"{base(request)}/orders?importBatch={batch}")
        return result

    @api.post("/touch")
    async def touch(request: Request) -> dict[str, Any]:
        """Set ``modifyDate`` (and shipments' ``createDate``) of orders (all, or ``orderIds``) to ``modified_at``."""
        body = await request.json()
        at = datetime.fromisoformat(str(body["modified_at"]).replace("Z", "+00:00"))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        with state.lock:
            ids = body.get("orderIds") or list(state.orders)
            for order_id in ids:
                state.orders[int(order_id)]["modifyDate"] = pacific_text(at)
                for s in state.shipments.values():
                    if s["orderId"] == int(order_id):
                        s["createDate"] = pacific_text(at)
            return {"touched": ids}

    @api.get("/products")
    def products() -> list[dict[str, Any]]:
        with state.lock:
            return [copy.deepcopy(p) for p in state.products.values()]

    @api.get("/order_queries")
    def order_queries() -> list[dict[str, str]]:
        """The filters of every v1 ``GET /orders`` since the reset (``orderStatus``, ``modifyDateStart``...)."""
        with state.lock:
            return list(state.order_queries)

    @api.get("/orders")
    def orders() -> list[dict[str, Any]]:
        with state.lock:
            return [copy.deepcopy(o) for o in state.orders.values()]

    return api
