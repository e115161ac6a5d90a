"""The Exact Online sandbox app: OAuth (rotating refresh token), ``current/Me`` and the division's REST API
(goods deliveries, their lines, addresses, items, sales orders), rate-limit headers, control endpoints."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ml_connector_sandbox.common import CONTROL_PREFIX, VendorError, install_sandbox
from ml_connector_sandbox.exact_online import seed
from ml_connector_sandbox.exact_online.state import (
    AUTHORIZATION_CODE,
    CLIENT_ID,
    CLIENT_SECRET,
    WEBHOOK_SECRET,
    ExactOnlineState,
)

API = "/api/v1"
SELECT_REQUIRED = "Please add a $select or a $top=1 statement to the query string."
_KEY = re.compile(r"^\(guid'(?P<id>[0-9a-fA-F-]{36})'\)$")
_MODIFIED = re.compile(r"Modified (?P<op>ge|gt|lt|le) datetime'(?P<at>[0-9T:\-.]+)'")
_ORDER_NUMBER = re.compile(r"^OrderNumber eq (?P<n>\d+)$")
_DATE_ARG = re.compile(r"^/Date\((\d+)\)/$")


def exact_error(status: int, message: str, headers: dict[str, str] | None = None) -> VendorError:
    """Exact's error shape: ``{"error": {"code": "", "message": {"lang": "", "value": ...}}}``."""
    return VendorError(status, {"error": {"code": "", "message": {"lang": "", "value": message}}}, headers)


def _parse_date(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def select(record: dict[str, Any], fields: str, expanded: set[str]) -> dict[str, Any]:
    """Project ``record`` on ``$select`` (``Nav/Field`` selects inside an expanded navigation property)."""
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    top = {f for f in wanted if "/" not in f}
    nested: dict[str, set[str]] = {}
    for f in wanted:
        if "/" in f:
            nav, _, inner = f.partition("/")
            nested.setdefault(nav, set()).add(inner)
    out: dict[str, Any] = {"__metadata": {"type": "Exact.Web.Api.Models"}}
    for key, value in record.items():
        if key in nested and isinstance(value, list):
            if key in expanded:
                out[key] = {"results": [{k: v for k, v in item.items() if k in nested[key]} for item in value]}
            else:
                out[key] = {"__deferred": {"uri": f"{key}"}}
        elif key in top:
            out[key] = value
    return out


def create_app(state: ExactOnlineState | None = None) -> FastAPI:
    state = state or ExactOnlineState()
    app = FastAPI(title="Exact Online sandbox (ml-connector)", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    install_sandbox(app, state)
    app.include_router(oauth_router(state))
    app.include_router(control_router(state))
    app.include_router(api_router(state))
    return app


# -- OAuth ---------------------------------------------------------------------------------------------------

def oauth_router(state: ExactOnlineState) -> APIRouter:
    api = APIRouter()

    @api.get("/api/oauth2/auth")
    def authorize(client_id: str = "", redirect_uri: str = "", response_type: str = "code") -> Response:
        if client_id != CLIENT_ID or response_type != "code" or not redirect_uri:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': AUTHORIZATION_CODE})}", status_code=302)

    @api.post("/api/oauth2/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = form.get("grant_type")
        with state.lock:
            if grant == "authorization_code":
                if form.get("code") != AUTHORIZATION_CODE:
                    return JSONResponse({"error": "invalid_grant", "error_description": "code is invalid"},
                                        status_code=400)
                state.increment("code_exchanges")
                return JSONResponse(state.issue_tokens())
            if grant != "refresh_token":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            if form.get("refresh_token") != state.refresh_token:
                state.increment("token_refused")
                return JSONResponse({"error": "invalid_grant", "error_description": "refresh token is invalid, "
                                     "expired or revoked"}, status_code=400)
            now = state.now()
            if state.last_refresh is not None and \
                    (now - state.last_refresh).total_seconds() < float(state.knobs["refresh_min_interval"]):
                state.increment("token_refused")
                body: dict[str, Any] = {"error": "access_denied",
                                        "error_description": "Rate limit exceeded: access_token not expired"}
                if state.knobs["rotate_on_too_early"]:
                    body.update(state.issue_tokens())
                    body.pop("access_token")
                    state.last_refresh = now - timedelta(
                        seconds=float(state.knobs["refresh_min_interval"]))
                return JSONResponse(body, status_code=400, headers={"Reason": "TooEarlyToRefreshTokens"})
            state.increment("token_refreshes")
            return JSONResponse(state.issue_tokens())

    return api


# -- the API -------------------------------------------------------------------------------------------------

def _authorized(state: ExactOnlineState, request: Request) -> None:
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not token or not state.token_valid(token):
        raise exact_error(401, "Access token is invalid or expired")


def api_router(state: ExactOnlineState) -> APIRouter:
    api = APIRouter()

    def answer(request: Request, status: int, body: Any = None) -> Response:
        _authorized(state, request)
        with state.lock:
            headers, refused = state.count_call()
        if refused is not None:
            state.increment("over_limit_calls")
            return Response(status_code=429, headers=refused.headers)
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def collection(request: Request, records: list[dict[str, Any]], base: str) -> Response:
        params = request.query_params
        if not params.get("$select") and params.get("$top") != "1":
            return answer(request, 400, exact_error(400, SELECT_REQUIRED).body)
        expanded = {e.strip() for e in (params.get("$expand") or "").split(",") if e.strip()}
        records = sorted(records, key=lambda r: str(r.get("EntryID") or r.get("ID") or r.get("OrderID")))
        skip = params.get("$skiptoken")
        if skip:
            records = [r for r in records if str(r.get("EntryID") or r.get("ID") or r.get("OrderID")) > skip]
        size = int(state.knobs["page_size"])
        page = records[:size]
        d: dict[str, Any] = {"results": [select(r, params["$select"], expanded) for r in page]}
        if len(records) > size:
            last = str(page[-1].get("EntryID") or page[-1].get("ID") or page[-1].get("OrderID"))
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = last
            d["__next"] = f"{str(request.base_url).rstrip('/')}{base}?{urlencode(query)}"
        return answer(request, 200, {"d": d})

    def division_ok(request: Request, division: int) -> Response | None:
        if division != seed.DIVISION:
            _authorized(state, request)
            return JSONResponse(exact_error(403, "Forbidden").body, status_code=403,
                                headers={"Reason": "NoDivisionAccess"})
        return None

    @api.get(f"{API}/current/Me")
    def me(request: Request) -> Response:
        return answer(request, 200, {"d": {"results": [{"CurrentDivision": seed.DIVISION, "FullName": "Sandbox User",
                                                        "UserName": "sandbox@ml-outdoor.example"}]}})

    @api.get(API + "/{division}/salesorder/GoodsDeliveries")
    def deliveries(division: int, request: Request) -> Response:
        if (refused := division_ok(request, division)) is not None:
            return refused
        flt = request.query_params.get("$filter") or ""
        with state.lock:
            records = [state.delivery_json(d) for d in state.deliveries.values()]
            chosen = []
            for d in state.deliveries.values():
                keep = True
                for m in _MODIFIED.finditer(flt):
                    at = _parse_date(m["at"])
                    keep &= {"ge": d.modified >= at, "gt": d.modified > at, "lt": d.modified < at,
                             "le": d.modified <= at}[m["op"]]
                if keep:
                    chosen.append(d.entry_id)
            records = [r for r in records if r["EntryID"] in chosen]
        return collection(request, records, request.url.path)

    @api.api_route(API + "/{division}/salesorder/GoodsDeliveries{key}", methods=["GET", "PUT"])
    async def delivery(division: int, key: str, request: Request) -> Response:
        if (refused := division_ok(request, division)) is not None:
            return refused
        match = _KEY.match(key)
        with state.lock:
            found = state.deliveries.get(match["id"]) if match else None
        if found is None:
            return answer(request, 404, exact_error(404, "Record not found").body)
        if request.method == "GET":
            params = request.query_params
            if not params.get("$select"):
                return answer(request, 400, exact_error(400, SELECT_REQUIRED).body)
            expanded = {e.strip() for e in (params.get("$expand") or "").split(",")}
            with state.lock:
                body = select(state.delivery_json(found), params["$select"], expanded)
            return answer(request, 200, {"d": body})
        try:
            changes = json.loads(await request.body())
        except ValueError:
            return answer(request, 400, exact_error(400, "Invalid JSON").body)
        refused_fields = {f.strip() for f in str(state.knobs["refuse_fields"]).split(",") if f.strip()}
        writable = {"TrackingNumber": "tracking", "Remarks": "remarks", "Description": "description"}
        for name in changes:
            if name in refused_fields or name not in writable:
                return answer(request, 400, exact_error(400, f"Field '{name}' cannot be changed on an existing "
                                                             "goods delivery").body)
        with state.lock:
            for name, value in changes.items():
                setattr(found, writable[name], value)
            found.modified = state.now()
            found.history.append(dict(changes))
            state.increment("writes")
        return answer(request, 204)

    @api.put(API + "/{division}/salesorder/GoodsDeliveryLines{key}")
    async def delivery_line(division: int, key: str, request: Request) -> Response:
        if (refused := division_ok(request, division)) is not None:
            return refused
        match = _KEY.match(key)
        changes = json.loads(await request.body() or b"{}")
        with state.lock:
            for d in state.deliveries.values():
                for line in d.lines:
                    if match and line["ID"] == match["id"]:
                        if set(changes) - {"TrackingNumber"}:
                            return answer(request, 400, exact_error(400, "Only TrackingNumber can be changed").body)
                        line.update(changes)
                        state.increment("writes")
                        return answer(request, 204)
        return answer(request, 404, exact_error(404, "Record not found").body)

    def single(request: Request, division: int, key: str, table: dict[str, dict[str, Any]]) -> Response:
        if (refused := division_ok(request, division)) is not None:
            return refused
        if not request.query_params.get("$select"):
            return answer(request, 400, exact_error(400, SELECT_REQUIRED).body)
        match = _KEY.match(key)
        with state.lock:
            record = table.get(match["id"]) if match else None
        if record is None:
            return answer(request, 404, exact_error(404, "Record not found").body)
        return answer(request, 200, {"d": select(record, request.query_params["$select"], set())})

    @api.get(API + "/{division}/crm/Addresses{key}")
    def address(division: int, key: str, request: Request) -> Response:
        return single(request, division, key, state.addresses)

    @api.get(API + "/{division}/logistics/Items{key}")
    def item(division: int, key: str, request: Request) -> Response:
        return single(request, division, key, state.items)

    @api.get(API + "/{division}/salesorder/SalesOrders")
    def sales_orders(division: int, request: Request) -> Response:
        if (refused := division_ok(request, division)) is not None:
            return refused
        match = _ORDER_NUMBER.match(request.query_params.get("$filter") or "")
        with state.lock:
            records = [dict(so) for n, so in state.sales_orders.items() if match is None or n == int(match["n"])]
        return collection(request, records, request.url.path)

    @api.api_route(API + "/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    def unknown(rest: str, request: Request) -> Response:
        return answer(request, 404, exact_error(404, f"Resource not found: {rest}").body)

    return api


# -- control -------------------------------------------------------------------------------------------------

def control_router(state: ExactOnlineState) -> APIRouter:
    api = APIRouter(prefix=f"{CONTROL_PREFIX}/exact_online", tags=["sandbox control"])

    @api.get("/deliveries")
    def overview() -> list[dict[str, Any]]:
        with state.lock:
            return [{"number": str(d.number), "entry_id": d.entry_id, "TrackingNumber": d.tracking,
                     "Remarks": d.remarks, "lines": [line.get("TrackingNumber") for line in d.lines],
                     "writes": list(d.history), "Modified": d.modified.isoformat()}
                    for d in sorted(state.deliveries.values(), key=lambda d: d.number)]

    @api.post("/touch")
    async def touch(request: Request) -> JSONResponse:
        body = await request.json()
        at = _parse_date(str(body.get("modified_at")).replace("Z", "+00:00")) if body.get("modified_at") \
            else state.now()
        with state.lock:
            numbers = body.get("numbers") or [d.number for d in state.deliveries.values()]
            for d in state.deliveries.values():
                if str(d.number) in {str(n) for n in numbers}:
                    d.modified = at
        return JSONResponse({"touched": [str(n) for n in numbers]})

    @api.post("/refresh_token/check")
    async def check(request: Request) -> JSONResponse:
        body = await request.json()
        with state.lock:
            return JSONResponse({"valid": body.get("refresh_token") == state.refresh_token})

    @api.post("/webhook")
    async def send_webhook(request: Request) -> JSONResponse:
        """Send a signed notification for a goods delivery to ``url`` (the webhook sender)."""
        from ml_connector_sandbox.exact_online.webhooks import notification

        body = await request.json()
        with state.lock:
            found = next((d for d in state.deliveries.values() if str(d.number) == str(body.get("number"))), None)
        if found is None:
            return JSONResponse({"error": "no such delivery"}, status_code=404)
        payload = notification(found.entry_id, secret=body.get("secret") or WEBHOOK_SECRET,
                                base=str(request.base_url).rstrip("/"), action=body.get("action", "Update"))
        response = requests.post(body["url"], data=payload, headers={"Content-Type": "application/json"},
                                 timeout=10)
        return JSONResponse({"status": response.status_code, "body": response.text[:500]})

    return api
