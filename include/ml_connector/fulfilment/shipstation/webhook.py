"""Inbound ShipStation webhooks: a FastAPI router the webhook plugin mounts under
``/ml-connector/webhooks/shipstation``.

ShipStation v1 does not sign its webhooks, so the registered URL ends with an unguessable token
(``.../ml-connector/webhooks/shipstation/<token>``, extra ``webhook_token`` of ``shipstation_default``), checked in
constant time: a wrong or missing token answers 404 and stores nothing. A good notification
(``{"resource_url": ..., "resource_type": "ORDER_NOTIFY" | "SHIP_NOTIFY" | ...}``) is stored in the ledger's
webhook inbox (a redelivery of the same body is dropped there) and answered 200 at once; ``collect_orders`` later
follows the ``resource_url`` with an authenticated GET, only when it is on the configured ShipStation host.

Plugin apps are served without Airflow's authentication, so the token is the only gate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

#: the inbox source of these deliveries
SOURCE = "shipstation"
EVENTS = frozenset({"ORDER_NOTIFY", "ITEM_ORDER_NOTIFY", "SHIP_NOTIFY", "ITEM_SHIP_NOTIFY",
                    "FULFILLMENT_SHIPPED", "FULFILLMENT_REJECTED"})


def _default_token() -> str:
    from ml_connector.fulfilment.shipstation.hook import ShipStationHook

    return str(ShipStationHook().extra("webhook_token") or "")


def _default_ledger() -> Any:
    from ml_connector.ledger import Ledger

    return Ledger.from_airflow()


def token_ok(given: str, expected: str) -> bool:
    """Constant-time comparison; an unset token refuses everything."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def make_router(token: Callable[[], str] = _default_token, ledger: Callable[[], Any] = _default_ledger) -> APIRouter:
    """The webhook router.

    :param token: gives the expected URL token (default: extra ``webhook_token`` of ``shipstation_default``).
    :param ledger: gives the ledger (default: the ``ml_connector_ledger`` connection's).
    """
    api = APIRouter()

    @api.post("/{url_token}")
    async def notification(url_token: str, request: Request) -> JSONResponse:
        try:
            expected = token()
        except Exception:  # a missing connection must not show as a server error to the caller
            log.exception("ShipStation webhook: no webhook token configured")
            expected = ""
        if not token_ok(url_token, expected):
            log.warning("ShipStation webhook refused: wrong URL token")
            return JSONResponse({"error": "not found"}, status_code=404)
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("resource_url"), str):
            return JSONResponse({"error": "body must be {\"resource_url\": ..., \"resource_type\": ...}"},
                                status_code=400)
        record = {"resource_url": payload["resource_url"], "resource_type": str(payload.get("resource_type") or "")}
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:40]
        stored = ledger().inbox_put(SOURCE, record, dedupe_key=f"{SOURCE}:{digest}")
        return JSONResponse({"stored": stored})

    return api


#: the router named in the registry (``webhook=...``)
router = make_router()
