"""UPS Track Alert webhook: the inbound route (``POST /ml-connector/webhooks/ups/track-alert``) and the credentials
it accepts.

The webhook plugin (``plugins/ml_connector_webhooks.py``) mounts :data:`router` under ``/ml-connector/webhooks/ups``
(the registry's ``webhook`` field of the UPS entry). Airflow serves plugin apps **without authentication**, so
every call is authenticated here, before the body is read:

- **v1** (destination URL in the subscription request): UPS sends the opaque credential we subscribed with in the
  ``credential`` header (UPSTrackAlert-v1-aee93d6.yaml ``#/webhooks/TrackingEvent/post/parameters``; UPS does not
  sign the body). It is compared in constant time with the credential(s) stored in the ledger.
- **v2** (webhook registered in the UPS portal): events carry ``x-api-key`` = the client id of our UPS app, and,
  under the ``clientOauth2`` scheme (UPSTrackAlert.yaml ``#/webhooks/TrackingEvent/post/security``), a bearer
  token that UPS fetched from *our* token URL with ``client_secret_basic``. :data:`router` serves that token URL
  too (``POST .../ups/oauth/token``); the client id/secret registered in the portal are stored in the ledger by
  ``poll_tracking`` from the UPS connection. A v2 event must carry both a token we issued and the right
  ``x-api-key``; without a token client configured, ``x-api-key`` alone is not enough (it is not a secret).

What the route stores: nothing but the body, in the webhook inbox (``ledger/inbox.py``), with a dedupe key made of
tracking number, UTC time and code, so a replayed event is one row. It makes no outbound call and answers 200 in
milliseconds (UPS: "acknowledge ... within milliseconds"). ``poll_tracking`` (or ``ml_connector_tracking_inbox``)
turns inbox rows into tracking events. Errors: 401 (no or wrong credential: nothing stored), 413 (body over
:data:`MAX_BODY_BYTES`), 400 (not JSON, or a field the spec requires is missing).

Credential rotation: a new ``track_alert_credential`` on the UPS connection becomes current at the next run and
every open subscription is renewed with it; the previous credential stays accepted until the subscriptions made
with it have expired (14 days at most), so no event is refused in between.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets as pysecrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ml_connector.carriers.ups.track_alert import INBOX_SOURCE
from ml_connector.carriers.ups.tracking import parse_track_alert_result, track_alert_dedupe_key
from ml_connector.errors import ConfigurationError, RecordError

log = logging.getLogger(__name__)

#: the inbox ``source`` of Track Alert events (the carrier's registry name)
#: secret names in the ledger's encrypted store
CREDENTIAL = "webhook:ups:track_alert:credential"
PREVIOUS_CREDENTIAL = "webhook:ups:track_alert:credential:previous"
API_KEY = "webhook:ups:track_alert:api_key"
TOKEN_CLIENT = "webhook:ups:track_alert:token_client"
TOKEN_PREFIX = "webhook:ups:track_alert:token:"
#: a Track Alert event is about 1 kB (a delivery photo in enhanced subscriptions adds a base64 image)
MAX_BODY_BYTES = int(os.environ.get("ML_CONNECTOR_WEBHOOK_MAX_BYTES", str(256 * 1024)))
TOKEN_TTL_SECONDS = 3600


# -- credentials in the ledger -------------------------------------------------------------------------------

def accepted_credentials(store: Any, *, now: float | None = None) -> list[str]:
    """The v1 credentials the route accepts: the current one, and the previous one until it expires."""
    now = time.time() if now is None else now
    found = []
    for name in (CREDENTIAL, PREVIOUS_CREDENTIAL):
        cached = store.get(name)
        if cached is not None and cached.value and (cached.expires_at is None or cached.expires_at > now):
            found.append(cached.value)
    return found


def remember_credential(store: Any, credential: str, *, previous_valid_until: float) -> bool:
    """Make ``credential`` the current v1 credential; returns True when it replaced another one (a rotation:
    the caller renews every open subscription with it). The replaced one stays accepted until
    ``previous_valid_until`` (when the last subscription made with it expires)."""
    current = store.get(CREDENTIAL)
    if current is not None and hmac.compare_digest(current.value.encode(), credential.encode()):
        return False
    if current is not None and current.value:
        store.put(PREVIOUS_CREDENTIAL, current.value, expires_at=previous_valid_until)
    store.put(CREDENTIAL, credential)
    return current is not None


def remember_v2_client(store: Any, *, api_key: str, token_client_id: str | None,
                       token_client_secret: str | None) -> None:
    """Store what v2 events are checked against: our UPS client id (``x-api-key``) and the client id/secret that
    UPS uses at our token URL (registered in the UPS portal)."""
    if (cached := store.get(API_KEY)) is None or cached.value != api_key:
        store.put(API_KEY, api_key)
    if token_client_id and token_client_secret:
        value = json.dumps({"id": token_client_id, "secret": token_client_secret})
        if (cached := store.get(TOKEN_CLIENT)) is None or cached.value != value:
            store.put(TOKEN_CLIENT, value)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _token_name(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def authenticated(store: Any, headers: Any, *, now: float | None = None) -> bool:
    """Whether the caller proved it is UPS: v1 ``credential`` header, or v2 ``x-api-key`` plus a token we issued.
    Every stored candidate is compared (constant time), whatever matched first."""
    now = time.time() if now is None else now
    given = headers.get("credential")
    ok = False
    if given is not None:
        for credential in accepted_credentials(store, now=now):
            ok |= _same(given, credential)
        return ok
    api_key, authorization = headers.get("x-api-key"), headers.get("authorization") or ""
    if api_key is None or not authorization.lower().startswith("bearer "):
        return False
    expected = store.get(API_KEY)
    token = authorization[7:].strip()
    issued = store.get(_token_name(token)) if token else None
    return (expected is not None and _same(api_key, expected.value) and issued is not None
            and (issued.expires_at is None or issued.expires_at > now))


def issue_token(store: Any, authorization: str | None, *, now: float | None = None) -> dict[str, Any] | None:
    """The v2 token URL: HTTP Basic with the registered token client id/secret -> an opaque bearer token (stored
    hashed-named and encrypted in the ledger until it expires). ``None`` when the client is not the registered one."""
    now = time.time() if now is None else now
    registered = store.get(TOKEN_CLIENT)
    if registered is None or not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        client_id, _, client_secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = json.loads(registered.value)
    if not (_same(client_id, expected["id"]) & _same(client_secret, expected["secret"])):
        return None
    token = pysecrets.token_urlsafe(32)
    store.put(_token_name(token), "issued", expires_at=now + TOKEN_TTL_SECONDS)
    return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_SECONDS}


# -- the routes ------------------------------------------------------------------------------------------------

def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> bytes | None:
    """The body, or None once it grows over :data:`MAX_BODY_BYTES` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


router = APIRouter(tags=["UPS Track Alert"])


@router.post("/track-alert")
async def track_alert(request: Request) -> JSONResponse:
    """One Track Alert event (UPSTrackAlert.yaml ``#/webhooks/TrackingEvent``)."""
    from ml_connector import webhooks

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _refuse(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        store = await run_in_threadpool(webhooks.secret_store)
    except ConfigurationError as exc:  # no Fernet keys, no ledger: say so in the API server's log, not to callers
        log.error("ml-connector webhooks are not configured in this API server: %s", exc)
        return _refuse(503, "not configured")
    if not await run_in_threadpool(authenticated, store, request.headers):
        return _refuse(401, "missing or wrong credential")
    raw = await _body(request)
    if raw is None:
        return _refuse(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return _refuse(400, "body is not valid JSON")
    try:
        result = parse_track_alert_result(body)
    except RecordError as exc:
        return _refuse(400, exc.message)
    key = track_alert_dedupe_key(result.events[0])
    new = await run_in_threadpool(webhooks.ledger().inbox_put, INBOX_SOURCE, raw.decode("utf-8", "replace"),
                                  dedupe_key=key)
    return JSONResponse({"status": "stored" if new else "duplicate"})


@router.post("/oauth/token")
async def token(request: Request) -> JSONResponse:
    """The v2 token URL registered in the UPS portal (``clientOauth2``: client credentials, client_secret_basic)."""
    from ml_connector import webhooks

    store = await run_in_threadpool(webhooks.secret_store)
    answer = await run_in_threadpool(issue_token, store, request.headers.get("authorization"))
    if answer is None:
        return JSONResponse({"error": "invalid_client"}, status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="ml-connector"'})
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
