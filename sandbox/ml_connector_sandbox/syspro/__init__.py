"""The SYSPRO sandbox: e.net Solutions REST (:mod:`.enet`), the OData service (:mod:`.odata`) and control
endpoints (:mod:`.control`) in one app. In production e.net and OData are two services (often two hosts); here
they share a port under their own path prefixes (``/SYSPROWCFService/Rest``, ``/SYSPRO8OData``)."""

from __future__ import annotations

from fastapi import FastAPI

from ml_connector_sandbox.common import install_sandbox
from ml_connector_sandbox.syspro import control, enet, odata
from ml_connector_sandbox.syspro.state import SysproState


def create_app(state: SysproState | None = None) -> FastAPI:
    """Build the SYSPRO sandbox app.

    :param state: share or pre-seed state (tests in-process); a fresh :class:`SysproState` by default.
    """
    state = state or SysproState()
    app = FastAPI(title="SYSPRO sandbox (ml-connector)", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    install_sandbox(app, state)
    app.include_router(control.router(state))
    app.include_router(enet.router(state))
    app.include_router(odata.router(state))
    return app
