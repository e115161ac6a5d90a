"""The UPS sandbox: a spec-faithful fake of the UPS REST APIs the connector calls, served by FastAPI.

Routes (as on ``https://onlinetools.ups.com``; point the ``ups_default`` connection host here):

- ``POST /security/v1/oauth/token``: client-credentials tokens (Basic auth, form body).
- ``POST /api/addressvalidation/{version}/{requestoption}``: XAV street level (rules in ``ups_address``).
- ``POST /api/shipments/{version}/ship`` and ``DELETE /api/shipments/{version}/void/cancel/{id}``.
- ``GET /api/track/v1/details/{n}``, ``/api/track/v1/shipment/details/{n}``,
  ``/api/track/v1/reference/details/{ref}``.

Request bodies are validated against the vendored specs; failures answer 400 and are listed by
``GET /_sandbox/validation_errors`` (``kind`` "request"), as are Ship calls refused by a business rule
the schema cannot express (``kind`` "rule": reference placement, BillShipper account, service code). Control endpoints: the common ones (``/_sandbox/counters``,
``knobs``, ``reset``, ``validation_errors``) plus ``POST /_sandbox/ups/advance``,
``POST /_sandbox/ups/expire_tokens`` and ``GET /_sandbox/ups/shipments``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_connector_sandbox import ups_errors as codes
from ml_connector_sandbox.common import DropConnection, VendorError, install_sandbox
from ml_connector_sandbox.specs.loader import SpecValidator, spec_validator
from ml_connector_sandbox.ups_address import xav_response
from ml_connector_sandbox.ups_errors import error_body, ups_error, ups_error_from
from ml_connector_sandbox.ups_shipping import (
    SHIP_VERSIONS,
    VOID_VERSIONS,
    build_shipment,
    check_ship_rules,
    ship_response,
    void_shipment,
)
from ml_connector_sandbox.ups_state import UpsState
from ml_connector_sandbox.ups_tracking import (
    ADVANCE_STATUSES,
    STAGES,
    advance,
    find_by_reference,
    refresh,
    shipment_answer,
    stage_index,
)

OAUTH_PATH = "/security/v1/oauth/token"
FORM = "application/x-www-form-urlencoded"
#: The password that the token endpoint rejects, so tests can exercise a wrong secret.
WRONG_SECRET = "wrong-secret"


def _validator(filename: str) -> SpecValidator:
    """The cached validator of a vendored UPS spec."""
    return spec_validator("ups", filename)


def _operation(request: Request) -> str:
    """``"POST /api/shipments/v2409/ship"``: how validation errors name the call."""
    return f"{request.method} {request.url.path}"


def _reject_invalid(state: UpsState, request: Request, errors: list[str],
                    code: str = codes.SCHEMA_INVALID) -> None:
    """Record spec violations and answer 400 naming the first one."""
    if errors:
        state.record_validation_error(_operation(request), errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ups_error(400, code, f"Invalid request: {errors[0]}{more}")


async def _json_body(state: UpsState, request: Request) -> Any:
    """The request body parsed as JSON, or a recorded 400."""
    try:
        return json.loads(await request.body())
    except ValueError:
        state.record_validation_error(_operation(request), ["$: body is not valid JSON"])
        raise ups_error_from(400, codes.BODY_NOT_JSON) from None


# -- OAuth -----------------------------------------------------------------------------------------
def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(client_id, secret) from an ``Authorization: Basic`` header, None when absent or malformed."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, separator, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if separator and client_id and secret else None


def _oauth_router(state: UpsState) -> APIRouter:
    """``POST /security/v1/oauth/token`` (not under /api, like the real host)."""
    router = APIRouter(tags=["OAuth"])

    @router.post(OAUTH_PATH)
    async def create_token(request: Request) -> JSONResponse:
        credentials = _basic_credentials(request.headers.get("authorization"))
        if credentials is None or credentials[1] == WRONG_SECRET:
            state.increment("auth_failures")
            raise ups_error_from(401, codes.CLIENT_INVALID)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        errors = _validator("OAuthClientCredentials.yaml").request_errors(OAUTH_PATH, "post", form, FORM)
        _reject_invalid(state, request, errors, code=codes.GRANT_TYPE_INVALID[0])
        if form["grant_type"] != "client_credentials":
            raise ups_error_from(400, codes.GRANT_TYPE_INVALID)
        issued = state.issue_token(credentials[0])
        if issued is None:
            state.increment("rate_limited")
            state.increment("token_quota_exceeded")
            raise ups_error_from(429, codes.TOO_MANY_REQUESTS)
        access_token, record = issued
        # Every field is a string in tokenSuccessResponse, issued_at in epoch milliseconds.
        return JSONResponse({
            "token_type": "Bearer",
            "issued_at": str(int(record.issued_at.timestamp() * 1000)),
            "client_id": record.client_id,
            "access_token": access_token,
            "scope": "",
            "expires_in": str(int((record.expires_at - record.issued_at).total_seconds())),
            "refresh_count": "0",
            "status": "approved",
        })

    return router


# -- /api ------------------------------------------------------------------------------------------
def _bearer_dependency(state: UpsState):
    """A FastAPI dependency: 401 code 250002 unless the request carries a valid, unexpired token."""
    def require_bearer(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not state.token_is_valid(token.strip()):
            state.increment("auth_failures")
            raise ups_error_from(401, codes.AUTH_INVALID)
    return require_bearer


def _add_address_validation(api: APIRouter, state: UpsState) -> None:
    """``POST /api/addressvalidation/{version}/{requestoption}``."""
    @api.post("/addressvalidation/{version}/{requestoption}")
    async def address_validation(version: str, requestoption: str, request: Request) -> JSONResponse:
        state.increment("xav_requests")
        if version not in ("v1", "v2"):
            raise ups_error(400, codes.VERSION_INVALID, f"Invalid version {version!r}: use v2")
        if requestoption not in ("1", "2", "3"):
            raise ups_error(400, codes.SCHEMA_INVALID, f"Invalid requestoption {requestoption!r}: use 1, 2 or 3")
        body = await _json_body(state, request)
        errors = _validator("AddressValidation.yaml").request_errors(
            "/addressvalidation/{version}/{requestoption}", "post", body)
        _reject_invalid(state, request, errors)
        raw_size = request.query_params.get("maximumcandidatelistsize", "15")
        if not raw_size.isdigit() or int(raw_size) > 50:
            raise ups_error(400, codes.SCHEMA_INVALID, "maximumcandidatelistsize must be 0-50")
        # v1 is object-if-single by contract; v2 only when the knob asks for UPS's real-world habit.
        single = version == "v1" or state.knob("xav_single_object")
        return JSONResponse(xav_response(body["XAVRequest"]["AddressKeyFormat"], requestoption,
                                         max_candidates=int(raw_size), single_object=single))


def _add_shipping(api: APIRouter, state: UpsState) -> None:
    """``POST /api/shipments/{version}/ship`` and the void ``DELETE``."""
    @api.post("/shipments/{version}/ship")
    async def ship(version: str, request: Request) -> JSONResponse:
        state.increment("ship_requests")
        if version not in SHIP_VERSIONS:
            raise ups_error(400, codes.VERSION_INVALID, f"Invalid version {version!r}: use v2409")
        body = await _json_body(state, request)
        _reject_invalid(state, request, _validator("Shipping.yaml").request_errors(
            "/shipments/{version}/ship", "post", body))
        try:
            check_ship_rules(body)
        except VendorError as exc:
            # Recorded too: an end-to-end test can assert the connector never sent a request UPS refuses.
            error = exc.body["response"]["errors"][0]
            state.record_validation_error(_operation(request), [f"{error['code']} {error['message']}"], kind="rule")
            raise
        with state.lock:
            shipment = build_shipment(body, next_serial=state.next_serial, now=state.now())
            state.store_shipment(shipment)
            crash = state.take_one("crash_after_label_next")
            single = state.knobs["package_results_single_object"]
        if crash:
            # The label exists (counted, trackable by reference) but the client never hears of it.
            raise DropConnection
        return JSONResponse(ship_response(shipment, body, version=version, package_results_single_object=single))

    @api.delete("/shipments/{version}/void/cancel/{shipment_id}")
    def void(version: str, shipment_id: str, request: Request) -> JSONResponse:
        if version not in VOID_VERSIONS:
            raise ups_error(400, codes.VERSION_INVALID, f"Invalid version {version!r}: use v2409")
        return JSONResponse(void_shipment(state, shipment_id, request.query_params.get("trackingnumber")))


def _require_track_headers(request: Request) -> None:
    """Tracking.yaml marks ``transId`` and ``transactionSrc`` as required headers."""
    missing = [name for name in ("transId", "transactionSrc") if not request.headers.get(name)]
    if missing:
        raise ups_error(400, codes.TRACK_HEADER_MISSING, f"Missing required header: {', '.join(missing)}")


def _check_inquiry_number(number: str) -> None:
    """Tracking.yaml: an inquiry number is 7 to 34 characters."""
    if not 7 <= len(number.strip()) <= 34:
        raise ups_error_from(400, codes.INQUIRY_INVALID)


def _add_tracking(api: APIRouter, state: UpsState) -> None:
    """Track by number, by shipment and by reference."""
    @api.get("/track/v1/details/{inquiry_number}")
    def track_details(inquiry_number: str, request: Request) -> JSONResponse:
        _require_track_headers(request)
        _check_inquiry_number(inquiry_number)
        state.increment("track_requests")
        with state.lock:
            found = state.find_package(inquiry_number)
            if found:
                refresh(state, *found)
            entries = [(found[0], [found[1]])] if found else []
            return JSONResponse(shipment_answer(inquiry_number, entries, dict(request.query_params)))

    @api.get("/track/v1/shipment/details/{inquiry_number}")
    def track_shipment(inquiry_number: str, request: Request) -> JSONResponse:
        _require_track_headers(request)
        _check_inquiry_number(inquiry_number)
        state.increment("track_requests")
        offset = request.query_params.get("offset", "0")
        count = request.query_params.get("count", "50")
        if not (offset.isdigit() and count.isdigit()):
            raise ups_error(400, codes.SCHEMA_INVALID, "offset and count must be whole numbers")
        offset, count = int(offset), int(count)
        with state.lock:
            found = state.find_package(inquiry_number)
            entries = []
            if found:
                shipment = found[0]
                for package in shipment.packages:
                    refresh(state, shipment, package)
                entries = [(shipment, shipment.packages[offset: offset + count])]
            return JSONResponse(shipment_answer(inquiry_number, entries, dict(request.query_params)))

    @api.get("/track/v1/reference/details/{reference_number}")
    def track_reference(reference_number: str, request: Request) -> JSONResponse:
        _require_track_headers(request)
        state.increment("track_reference_requests")
        options = dict(request.query_params)
        with state.lock:
            found = find_by_reference(state, reference_number, options)
            return JSONResponse(shipment_answer(reference_number, found, options))


# -- UPS-only control endpoints --------------------------------------------------------------------
def _control_router(state: UpsState) -> APIRouter:
    """``/_sandbox/ups/...``: move tracking along, expire tokens, list stored shipments."""
    router = APIRouter(prefix="/_sandbox/ups", tags=["sandbox control"])

    @router.post("/advance")
    async def advance_package(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"error": 'body must be {"tracking_number": "1Z...", "status": "..."}',
                                 "statuses": list(ADVANCE_STATUSES)}, status_code=400)
        number, status = str(payload.get("tracking_number", "")), payload.get("status", "")
        with state.lock:
            found = state.find_package(number)
            if found is None:
                return JSONResponse({"error": f"unknown tracking number {number!r}"}, status_code=404)
            shipment, package = found
            try:
                refresh(state, shipment, package)
                advance(package, status, state.now())
            except ValueError as exc:
                return JSONResponse({"error": str(exc), "statuses": list(ADVANCE_STATUSES)}, status_code=409)
            current = package.events[-1].code
            return JSONResponse({"tracking_number": package.tracking_number,
                                 "stage": STAGES[stage_index(package)], "current_code": current})

    @router.post("/expire_tokens")
    def expire_tokens() -> dict[str, Any]:
        state.set_knobs({"expire_all_tokens": True})
        return {"expired": True}

    @router.get("/shipments")
    def list_shipments() -> list[dict[str, Any]]:
        with state.lock:
            return [
                {"shipment_id": shipment.shipment_id, "service_code": shipment.service_code,
                 "shipper_number": shipment.shipper_number, "created_at": shipment.created_at.isoformat(),
                 "voided": shipment.voided, "references": shipment.references, "ship_to": shipment.ship_to,
                 "packages": [{"tracking_number": package.tracking_number, "references": package.references,
                               "voided": package.voided, "stage": STAGES[stage_index(package)]}
                              for package in shipment.packages]}
                for shipment in state.shipments.values()
            ]

    return router


def _install_error_handlers(app: FastAPI) -> None:
    """Unknown routes and unparsable parameters answer in the UPS error shape too."""
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.status_code), str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def parameter_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(codes.SCHEMA_INVALID, f"Invalid request: {exc.errors()[:1]}"),
                            status_code=400)


def create_app(state: UpsState | None = None) -> FastAPI:
    """Build the UPS sandbox app.

    :param state: share or pre-seed state (tests in-process); a fresh :class:`UpsState` by default.
    """
    state = state or UpsState()
    app = FastAPI(title="UPS sandbox (ml-connector)", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    install_sandbox(app, state)
    _install_error_handlers(app)
    api = APIRouter(prefix="/api", dependencies=[Depends(_bearer_dependency(state))])
    _add_address_validation(api, state)
    _add_shipping(api, state)
    _add_tracking(api, state)
    app.include_router(_oauth_router(state))
    app.include_router(api)
    app.include_router(_control_router(state))
    # Parse the big specs now, not on the first request (Shipping.yaml takes ~0.1 s).
    for filename in ("OAuthClientCredentials.yaml", "AddressValidation.yaml", "Shipping.yaml", "Tracking.yaml"):
        _validator(filename)
    return app
