"""Inbound Exact Online webhooks: a FastAPI router the webhook plugin mounts under
``/ml-connector/webhooks/exact_online``.

Exact signs a notification in its body, not in a header: ``{"Content": {...}, "HashCode": "<HEX>"}`` where
``HashCode`` is the upper-case hex HMAC-SHA256 of the raw ``Content`` text exactly as sent, keyed with the app's
webhook secret. The route checks it on the raw bytes (constant-time compare) and refuses anything else with 401,
storing nothing; a good notification's key goes into the ledger's webhook inbox (duplicates dropped) and the
route answers 200 at once. The notification carries only a key: the next ``extract_orders`` fetches the record.

Plugin apps are served without Airflow's authentication, so this signature is the only gate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector.erp.exact_online.mapping import WEBHOOK_SOURCE

log = logging.getLogger(__name__)

SOURCE = WEBHOOK_SOURCE
_BODY = re.compile(rb'^\s*\{\s*"Content"\s*:\s*(?P<content>.*)\s*,\s*"HashCode"\s*:\s*"(?P<hash>[0-9A-Fa-f]*)"\s*\}\s*$',
                   re.DOTALL)


def hash_code(content: bytes | str, secret: str) -> str:
    """``HashCode`` of a ``Content`` text: upper-case hex HMAC-SHA256 keyed with the webhook secret."""
    raw = content.encode() if isinstance(content, str) else content
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest().upper()


def verify(body: bytes, secret: str) -> dict[str, Any] | None:
    """The parsed ``Content`` of a correctly signed notification, else ``None``."""
    if not secret:
        return None
    match = _BODY.match(body)
    if match is None:
        return None
    expected = hash_code(match.group("content"), secret)
    if not hmac.compare_digest(expected.encode(), match.group("hash").upper()):
        return None
    try:
        content = json.loads(match.group("content"))
    except ValueError:
        return None
    return content if isinstance(content, dict) else None


def _default_secret() -> str:
    from ml_connector.erp.exact_online.hook import ExactOnlineHook

    return str(ExactOnlineHook().extra("webhook_secret") or "")


def _default_ledger() -> Any:
    from ml_connector.ledger import Ledger

    return Ledger.from_airflow()


def make_router(secret: Callable[[], str] = _default_secret, ledger: Callable[[], Any] = _default_ledger) -> APIRouter:
    """The webhook router.

    :param secret: gives the webhook secret (default: extra ``webhook_secret`` of ``exact_online_default``).
    :param ledger: gives the ledger (default: the ``ml_connector_ledger`` connection's).
    """
    api = APIRouter()

    @api.post("")
    @api.post("/")
    async def notification(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            key_secret = secret()
        except Exception:  # a missing connection must not show as a server error to the caller
            log.exception("Exact Online webhook: no webhook secret configured")
            key_secret = ""
        content = verify(body, key_secret)
        if content is None:
            log.warning("Exact Online webhook refused: wrong or missing HashCode (%d bytes)", len(body))
            return JSONResponse({"error": "invalid HashCode"}, status_code=401)
        key = str(content.get("Key") or "")
        record = {"topic": content.get("Topic"), "action": content.get("Action"), "key": key,
                  "division": content.get("Division"), "endpoint": content.get("ExactOnlineEndpoint")}
        digest = hashlib.sha256(body).hexdigest()[:32]
        stored = ledger().inbox_put(SOURCE, record, dedupe_key=f"{SOURCE}:{record['topic']}:{key}:{digest}")
        return JSONResponse({"stored": stored})

    return api


#: the router named in the registry (``webhook=...``)
router = make_router()
