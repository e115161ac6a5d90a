"""The Acumatica sandbox app: the concern routers of this package behind one FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from ml_connector_sandbox.acumatica import auth, control, entity
from ml_connector_sandbox.acumatica.state import AcumaticaState
from ml_connector_sandbox.common import install_sandbox


def create_app(state: AcumaticaState | None = None) -> FastAPI:
    """Build the Acumatica sandbox app (login/logout, ``GET /entity``, the Default endpoint's Shipment and
    files, control).

    :param state: share or pre-seed state (tests in-process); a fresh :class:`AcumaticaState` by default.
    """
    state = state or AcumaticaState()
    app = FastAPI(title="Acumatica sandbox (ml-connector)", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    install_sandbox(app, state)
    app.include_router(control.router(state))
    app.include_router(auth.router(state))
    app.include_router(entity.router(state))
    return app
