"""``POST /entity/auth/login`` and ``POST /entity/auth/logout``: the cookie session of the API user.

Login takes ``{"name", "password", "tenant", "branch", "locale"}`` (JSON). Wrong name, password or tenant: 401
"Invalid credentials". ``company`` and ``tenant`` together: 500 (Acumatica refuses the pair). Every slot of the
licence taken (knob ``max_sessions``, 2 as on a trial licence): 500 whose text carries "API Login Limit".
Every other API route needs the session cookie (401 without it or after it expired), or a bearer token from
``POST /identity/connect/token`` (password grant, scope ``api``, the sandbox's OAuth client and API user;
``invalid_client`` / ``invalid_grant`` otherwise).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ml_connector_sandbox.acumatica.state import SESSION_COOKIE, AcumaticaState
from ml_connector_sandbox.common import VendorError
from ml_connector_sandbox.credentials import (
    ACUMATICA_OAUTH_CLIENT_ID,
    ACUMATICA_OAUTH_CLIENT_SECRET,
    ACUMATICA_PASSWORD,
    ACUMATICA_TENANT,
    ACUMATICA_USERNAME,
)

NOT_LOGGED_IN = {"message": "You are not logged in."}


def require_session(state: AcumaticaState):
    """A FastAPI dependency: the request carries the cookie of an open session, or a bearer token of the
    identity server."""
    def check(request: Request) -> None:
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and state.token_ok(bearer[len("Bearer "):]):
            return
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

    @api.post("/identity/connect/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != "password":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (form.get("client_id"), form.get("client_secret")) != (ACUMATICA_OAUTH_CLIENT_ID,
                                                                  ACUMATICA_OAUTH_CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        user, _, tenant = str(form.get("username") or "").partition("@")
        if (user, form.get("password")) != (ACUMATICA_USERNAME, ACUMATICA_PASSWORD) or \
                (tenant and tenant != ACUMATICA_TENANT):
            return JSONResponse({"error": "invalid_grant", "error_description": "invalid_username_or_password"},
                                status_code=400)
        if "api" not in str(form.get("scope") or "").split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        return JSONResponse({"access_token": state.issue_token(), "expires_in": 3600, "token_type": "Bearer",
                             "scope": "api"})

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
