"""Airflow plugin: inbound webhooks of every registry vendor, served by the API server.

For each vendor in :mod:`ml_connector.registry` whose ``webhook`` field is set (a dotted path of a FastAPI
``APIRouter``), the router is mounted under ``/ml-connector/webhooks/<vendor name>``: the UPS Track Alert route is
``POST /ml-connector/webhooks/ups/track-alert``. Airflow mounts plugin apps **without authentication**; every
route authenticates each call itself, stores what arrived in the ledger's webhook inbox, and answers at once.

A router that cannot be imported is left out (logged): one vendor's broken webhook must not take the others
down. ``GET /ml-connector/webhooks/health`` lists the mounted vendors (no secret, no ledger access).
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI

log = logging.getLogger(__name__)

URL_PREFIX = "/ml-connector/webhooks"


def create_app() -> FastAPI:
    """The webhook app: one router per registry vendor with a ``webhook``."""
    from ml_connector import registry

    app = FastAPI(title="ml-connector webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    mounted: list[str] = []
    for vendor in registry.vendors():
        if not vendor.webhook:
            continue
        try:
            router = registry.load(vendor.webhook)
        except Exception:  # one vendor's broken router must not take the others down
            log.exception("ml-connector: the %s webhook router %s cannot be loaded", vendor.name, vendor.webhook)
            continue
        app.include_router(router, prefix=f"/{vendor.name}")
        mounted.append(vendor.name)

    @app.get("/health")
    def health() -> dict[str, list[str]]:
        return {"vendors": mounted}

    return app


class MlConnectorWebhooksPlugin(AirflowPlugin):
    name = "ml_connector_webhooks"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "ml-connector webhooks"}]
