"""The Business Central sandbox app: the concern routers of this package behind one FastAPI app.

``POST /{tenant}/oauth2/v2.0/token`` (:mod:`.entra`) stands for the Entra host. The API routers
(:mod:`.companies`, :mod:`.sales_orders`, :mod:`.writeback`) are mounted twice, under
``/v2.0/{tenant}/{environment}/api`` and under ``/v2.0/{environment}/api`` (BC lets the tenant segment be
left out), behind two dependencies: a bearer token this sandbox issued, then the sandbox's tenant and
environment. Any other ``/v2.0/...`` URL is authenticated first and then answered with BC's 404.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from ml_connector_sandbox.business_central import (
    companies,
    control,
    entra,
    sales_invoices,
    sales_orders,
    writeback,
)
from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.errors import NO_RESOURCE, not_found, odata_error
from ml_connector_sandbox.business_central.odata import API_METHODS
from ml_connector_sandbox.business_central.state import BusinessCentralState
from ml_connector_sandbox.common import install_sandbox

#: Where BC serves its APIs: ``/v2.0/[{tenant}/]{environment}/api/...``.
API_PREFIXES = ("/v2.0/{tenant}/{environment}/api", "/v2.0/{environment}/api")
_PATH = re.compile(r"^/v2\.0/(?:(?P<tenant>[^/]+)/)?(?P<env>[^/]+)/api/(?P<api>.+)$")


def _check_tenant_and_environment(state: BusinessCentralState, tenant: str | None, environment: str) -> None:
    """BC's 404 for another tenant or an environment the tenant does not have."""
    if tenant is not None and tenant != state.tenant_id:
        raise odata_error(404, NO_RESOURCE, f"Tenant '{tenant}' was not found or has no Business Central "
                                            f"environment '{environment}'.")
    if environment.lower() != state.environment.lower():
        raise odata_error(404, NO_RESOURCE, f"Environment '{environment}' was not found for tenant "
                                            f"'{tenant or state.tenant_id}'.")


def environment_dependency(state: BusinessCentralState):
    """A FastAPI dependency: the URL's tenant (when given) and environment must be the sandbox's."""
    def require_environment(request: Request) -> None:
        _check_tenant_and_environment(state, request.path_params.get("tenant"),
                                      request.path_params["environment"])
    return require_environment


def _fallback_router(state: BusinessCentralState) -> APIRouter:
    """Every other ``/v2.0/...`` URL: authenticate first (as BC does), then BC's 404."""
    api = APIRouter(dependencies=[Depends(entra.bearer_dependency(state))], include_in_schema=False)

    @api.api_route("/v2.0/{rest:path}", methods=API_METHODS)
    async def no_resource(rest: str, request: Request) -> Response:
        match = _PATH.match(request.url.path)
        if match:
            _check_tenant_and_environment(state, match.group("tenant"), match.group("env"))
        raise not_found(request.url)

    return api


def create_app(state: BusinessCentralState | None = None) -> FastAPI:
    """Build the Business Central sandbox app (token endpoint, API v2.0, write-back page, control).

    :param state: share or pre-seed state (tests in-process); a fresh :class:`BusinessCentralState` by default.
    """
    state = state or BusinessCentralState()
    build = EntityBuilder(state)
    app = FastAPI(title="Business Central sandbox (ml-connector)", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    install_sandbox(app, state)
    app.include_router(entra.router(state))
    app.include_router(control.router(state, build))
    api = APIRouter(dependencies=[Depends(entra.bearer_dependency(state)), Depends(environment_dependency(state))])
    for concern in (companies, sales_orders, writeback, sales_invoices):
        api.include_router(concern.router(state, build))
    for prefix in API_PREFIXES:
        app.include_router(api, prefix=prefix)
    app.include_router(_fallback_router(state))
    return app
