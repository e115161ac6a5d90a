"""The UPS sandbox app: the concern routers of this package behind one FastAPI app.

``/security/v1/oauth/token`` (:mod:`.oauth`) stands outside ``/api``; every ``/api`` route
(:mod:`.address`, :mod:`.shipping`, :mod:`.tracking`) needs a bearer token the sandbox issued. Unknown routes
and unparsable parameters answer in the UPS error shape too.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_connector_sandbox.common import install_sandbox
from ml_connector_sandbox.ups import address, control, oauth, shipping, track_alert, tracking
from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import error_body
from ml_connector_sandbox.ups.state import UpsState
from ml_connector_sandbox.ups.validation import preload_specs


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
    api = APIRouter(prefix="/api", dependencies=[Depends(oauth.bearer_dependency(state))])
    for concern in (address, shipping, tracking, track_alert):
        api.include_router(concern.router(state))
    app.include_router(oauth.router(state))
    app.include_router(api)
    app.include_router(control.router(state))
    preload_specs()
    track_alert.Emitter(state).start()
    return app
