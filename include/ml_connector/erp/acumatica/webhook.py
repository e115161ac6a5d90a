"""Acumatica push notifications: a FastAPI router the webhook plugin mounts at
``/ml-connector/webhooks/acumatica`` (see :class:`ml_connector.registry.Vendor`).

Acumatica (Push Notifications, SM302000, destination type Webhook) POSTs ``{"Inserted": [...], "Deleted": [...],
"Query", "CompanyId", "Id", "TimeStamp", "AdditionalInfo"}`` with the Header Name / Header Value the admin
configured and no signature. Plugin apps are served without Airflow's authentication, so this route checks
the header itself: the name and value come from the ``push_header_name`` (default ``X-ML-Connector-Token``)
and ``push_header_value`` extras of the ``acumatica_default`` connection, compared in constant time; without a
configured value every call is refused. An accepted body is stored in the ledger's webhook inbox with its
``Id`` as the dedupe key (a redelivery is stored once) and answered 200 at once; the next ``extract_orders``
run of an Acumatica pipeline reads the shipments it names, whatever their modification time
(:meth:`~ml_connector.erp.acumatica.source.AcumaticaSource.pushed`), so a pushed shipment does not wait for
its schedule window.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

#: the inbox ``source`` of Acumatica push notifications (the registry name)
INBOX_SOURCE = "acumatica"
DEFAULT_HEADER_NAME = "X-ML-Connector-Token"
CONN_ID = "acumatica_default"
LEDGER_CONN_ID = "ml_connector_ledger"

router = APIRouter()
_ledgers: dict[str, Any] = {}


def _push_secret(conn_id: str = CONN_ID) -> tuple[str, str | None]:
    """``(header name, header value)`` from the connection's extras (the value None when not configured)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        extras = BaseHook.get_connection(conn_id).extra_dejson or {}
    except AirflowNotFoundException:
        return DEFAULT_HEADER_NAME, None
    name = str(extras.get("push_header_name") or DEFAULT_HEADER_NAME)
    value = extras.get("push_header_value")
    return name, (str(value) if value else None)


def _ledger():
    from ml_connector.ledger import Ledger
    from ml_connector.ledger.engine import resolve_ledger_url

    url = resolve_ledger_url(LEDGER_CONN_ID)
    if url not in _ledgers:
        _ledgers[url] = Ledger(url)
    return _ledgers[url]


@router.post("")
@router.post("/")
def push_notification(request: Request, body: dict[str, Any] | None = None) -> JSONResponse:
    """Store one push notification (dedupe by ``Id``) and answer 200 at once; 401 without the configured header
    value, 400 for a body that is not a push notification."""
    header, expected = _push_secret()
    given = request.headers.get(header)
    if not expected or given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    if not isinstance(body, dict) or not body.get("Id"):
        return JSONResponse({"error": "not an Acumatica push notification (no Id)"}, status_code=400)
    stored = _ledger().inbox_put(INBOX_SOURCE, json.dumps(body, sort_keys=True),
                                 dedupe_key=f"{INBOX_SOURCE}:{body['Id']}")
    log.info("Acumatica push notification %s (%s): %s", body.get("Id"), body.get("Query"),
             "stored" if stored else "duplicate")
    return JSONResponse({"status": "stored" if stored else "duplicate"})
