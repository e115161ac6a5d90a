"""``POST /entity/auth/login`` and ``POST /entity/auth/logout``: the cookie session of the API user.

Login takes ``{"name", "password", "tenant", "branch", "locale"}`` (JSON). Wrong name, password or tenant: 401
"Invalid credentials". ``company`` and ``tenant`` together: 500 (Acumatica refuses the pair). Every slot of the
licence taken (knob ``max_sessions``, 2 as on a trial licence): 500 whose text carries "API Login Limit".
Every other API route needs the session cookie: 401 without it or after it expired.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ml_connector_sandbox.acumatica.state import SESSION_COOKIE, AcumaticaState
from ml_connector_sandbox.common import VendorError
from ml_connector_sandbox.credentials import ACUMATICA_PASSWORD, ACUMATICA_TENANT, ACUMATICA_USERNAME

NOT_LOGGED_IN = {"message": "You are not logged in."}


def require_session(state: AcumaticaState):
    """A FastAPI dependency: the request carries the cookie of an open session."""
    def check(request: Request) -> None:
        if not state.session_ok(request.cookies.get(SESSION_COOKIE)):
            state.increment("not_logged_in")
            raise VendorError(401, NOT_LOGGED_IN)
    return check


def router(state: AcumaticaState) -> APIRouter:
    api = APIRouter()

    @api.post("/entity/auth/login")
    async def login(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            state.record_validation_error("login", ["body must be a JSON object"])
            raise VendorError(400, {"message": "The request is invalid."})
        if body.get("company") and body.get("tenant"):
            state.record_validation_error("login", ["company and tenant both given"], kind="rule")
            raise VendorError(500, {"message": "An error has occurred.",
                                    "exceptionMessage": "Specify either the company or the tenant, not both."})
        tenant = body.get("tenant") or body.get("company")
        if (body.get("name"), body.get("password")) != (ACUMATICA_USERNAME, ACUMATICA_PASSWORD) or \
                (tenant and tenant != ACUMATICA_TENANT):
            raise VendorError(401, {"message": "Invalid credentials. Please try again."})
        token = state.open_session(str(body["name"]))
        response = Response(status_code=204)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, path="/")
        response.set_cookie("ASP.NET_SessionId", token[:24], httponly=True, path="/")
        return response

    @api.post("/entity/auth/logout")
    async def logout(request: Request) -> Response:
        state.close_session(request.cookies.get(SESSION_COOKIE))
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @api.get("/entity", dependencies=[])
    def root(request: Request) -> JSONResponse:
        require_session(state)(request)
        base = str(request.base_url).rstrip("/")
        return JSONResponse({
            "version": {"acumaticaBuildVersion": state.seed["build_version"], "databaseVersion": "24.204.0012"},
            "endpoints": [{"name": name, "version": version, "href": f"{base}/entity/{name}/{version}/"}
                          for name, version in state.endpoints()],
        })

    return api
