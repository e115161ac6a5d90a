"""Inbound Business Central webhooks: a FastAPI router the webhook plugin mounts under
``/ml-connector/webhooks/business_central`` (used by the ShipStation pipeline's item subscriptions).

* Handshake: when a subscription is created or renewed, Business Central calls the notification URL with
  ``?validationToken=<token>`` and expects the token back as the body with 200; the route answers it at once.
* Notifications: ``{"value": [{"subscriptionId", "clientState", "resource", "changeType", ...}]}``, no entity data.
  Business Central deletes a subscription whose URL answers anything but 2xx (408/429/5xx are retried), so the
  route answers 200 at once; entries whose ``clientState`` is not the connection's ``webhook_client_state``
  (constant-time compare) are dropped, the others are stored in the ledger's webhook inbox (duplicates dropped).
  The ShipStation pipeline's next ``push_items`` pushes the items they name (whatever their modification time)
  and marks the rows done.

Plugin apps are served without Airflow's authentication: the client state is the check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

log = logging.getLogger(__name__)

SOURCE = "business_central"


def _default_client_state() -> str:
    from ml_connector.erp.business_central.hook import BusinessCentralHook

    return str(BusinessCentralHook().extra("webhook_client_state") or "")


def _default_ledger() -> Any:
    from ml_connector.ledger import Ledger

    return Ledger.from_airflow()


def make_router(client_state: Callable[[], str] = _default_client_state,
                ledger: Callable[[], Any] = _default_ledger) -> APIRouter:
    api = APIRouter()

    @api.api_route("", methods=["GET", "POST"])
    @api.api_route("/", methods=["GET", "POST"])
    async def notification(request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            return PlainTextResponse(token, status_code=200)
        try:
            body = json.loads(await request.body() or b"{}")
            expected = client_state()
        except Exception:  # never a non-2xx: Business Central would delete the subscription
            log.exception("Business Central webhook: unreadable notification or no client state configured")
            return JSONResponse({"stored": 0})
        stored = 0
        for entry in (body.get("value") or []) if isinstance(body, dict) else []:
            given = str(entry.get("clientState") or "")
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning("Business Central webhook: notification with a wrong clientState dropped")
                continue
            record = {k: entry.get(k) for k in ("subscriptionId", "resource", "changeType", "lastModifiedDateTime")}
            digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:40]
            stored += bool(ledger().inbox_put(SOURCE, record, dedupe_key=f"{SOURCE}:{digest}"))
        return JSONResponse({"stored": stored})

    return api


#: the router named in the registry (``webhook=...``)
router = make_router()
