"""UPS OAuth client credentials: ``POST /security/v1/oauth/token`` and the bearer check of every ``/api`` route.

Only the documented sandbox app (:data:`~ml_connector_sandbox.credentials.UPS_CLIENT_ID` /
:data:`~ml_connector_sandbox.credentials.UPS_CLIENT_SECRET`) gets a token. Any other client id or secret, or
a missing or malformed ``Authorization: Basic`` header, is answered as UPS answers it: HTTP 401 with code
10401 "ClientId is Invalid" (UPS does not say which half was wrong).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET
from ml_connector_sandbox.ups import errors as codes
from ml_connector_sandbox.ups.errors import ups_error_from
from ml_connector_sandbox.ups.state import UpsState
from ml_connector_sandbox.ups.validation import reject_invalid, validator

OAUTH_PATH = "/security/v1/oauth/token"
FORM = "application/x-www-form-urlencoded"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(client_id, secret) from an ``Authorization: Basic`` header, None when absent or malformed."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, separator, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if separator and client_id and secret else None


def is_sandbox_app(client_id: str, secret: str) -> bool:
    """True only for the sandbox's documented client id and secret (compared in constant time)."""
    return (hmac.compare_digest(client_id.encode(), UPS_CLIENT_ID.encode())
            & hmac.compare_digest(secret.encode(), UPS_CLIENT_SECRET.encode()))


def router(state: UpsState) -> APIRouter:
    """``POST /security/v1/oauth/token`` (not under /api, like the real host)."""
    api = APIRouter(tags=["OAuth"])

    @api.post(OAUTH_PATH)
    async def create_token(request: Request) -> JSONResponse:
        credentials = basic_credentials(request.headers.get("authorization"))
        if credentials is None or not is_sandbox_app(*credentials):
            state.increment("auth_failures")
            raise ups_error_from(401, codes.CLIENT_INVALID)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        errors = validator("OAuthClientCredentials.yaml").request_errors(OAUTH_PATH, "post", form, FORM)
        reject_invalid(state, request, errors, code=codes.GRANT_TYPE_INVALID[0])
        if form["grant_type"] != "client_credentials":
            raise ups_error_from(400, codes.GRANT_TYPE_INVALID)
        issued = state.issue_token(credentials[0])
        if issued is None:
            state.increment("rate_limited")
            state.increment("token_quota_exceeded")
            raise ups_error_from(429, codes.TOO_MANY_REQUESTS)
        access_token, record = issued
        # Every field is a string in tokenSuccessResponse, issued_at in epoch milliseconds.
        return JSONResponse({
            "token_type": "Bearer",
            "issued_at": str(int(record.issued_at.timestamp() * 1000)),
            "client_id": record.client_id,
            "access_token": access_token,
            "scope": "",
            "expires_in": str(int((record.expires_at - record.issued_at).total_seconds())),
            "refresh_count": "0",
            "status": "approved",
        })

    return api


def bearer_dependency(state: UpsState) -> Callable[[Request], None]:
    """A FastAPI dependency: 401 code 250002 unless the request carries a valid, unexpired token."""
    def require_bearer(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not state.token_is_valid(token.strip()):
            state.increment("auth_failures")
            raise ups_error_from(401, codes.AUTH_INVALID)
    return require_bearer
