"""Microsoft Entra client credentials for Business Central: ``POST /{tenant}/oauth2/v2.0/token`` and the bearer
check of every API route.

The hook's ``authority`` extra points its token request here (real: ``https://login.microsoftonline.com``).
Only the sandbox app registration gets a token:
:data:`~ml_connector_sandbox.credentials.BUSINESS_CENTRAL_CLIENT_ID` with
:data:`~ml_connector_sandbox.credentials.BUSINESS_CENTRAL_CLIENT_SECRET`. As at Entra, an unknown client id
is HTTP 400 ``unauthorized_client`` (AADSTS700016) and a wrong secret HTTP 401 ``invalid_client``
(AADSTS7000215); a missing secret is 401 ``invalid_client`` (AADSTS7000216).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector_sandbox.business_central.errors import AUTH_INVALID, entra_error, odata_error
from ml_connector_sandbox.business_central.state import BusinessCentralState
from ml_connector_sandbox.common import VendorError
from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET

SCOPE = "https://api.businesscentral.dynamics.com/.default"


def _same(given: str, expected: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(given.encode(), expected.encode())


def client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str]:
    """client_id/secret from the form (client_secret_post) or a Basic header (client_secret_basic)."""
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            basic_id, _, basic_secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            basic_id = basic_secret = ""
        client_id, secret = client_id or basic_id, secret or basic_secret
    if not client_id:
        raise entra_error(400, "invalid_request", 900144,
                          "The request body must contain the following parameter: 'client_id'.")
    if not secret:
        raise entra_error(401, "invalid_client", 7000216,
                          "'client_assertion', 'client_secret' or 'request' is required for the "
                          "'client_credentials' grant type.")
    return client_id, secret


def check_client(tenant: str, client_id: str, secret: str) -> None:
    """Refuse everything but the sandbox app registration, with Entra's own answers."""
    if not _same(client_id, BUSINESS_CENTRAL_CLIENT_ID):
        raise entra_error(400, "unauthorized_client", 700016,
                          f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
                          "This can happen if the application has not been installed by the administrator of the "
                          "tenant or consented to by any user in the tenant. You may have sent your "
                          "authentication request to the wrong tenant.")
    if not _same(secret, BUSINESS_CENTRAL_CLIENT_SECRET):
        raise entra_error(401, "invalid_client", 7000215,
                          "Invalid client secret provided. Ensure the secret being sent in the request "
                          "is the client secret value, not the client secret ID, for a secret added to "
                          f"app '{client_id}'.")


def router(state: BusinessCentralState) -> APIRouter:
    """``POST /{tenant}/oauth2/v2.0/token``."""
    api = APIRouter(tags=["Microsoft Entra"])

    @api.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        try:
            client_id, secret = client_credentials(request, form)
            if tenant != state.tenant_id:
                raise entra_error(400, "invalid_request", 90002,
                                  f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                  "and are signing into the correct cloud.")
            if form.get("grant_type") != "client_credentials":
                raise entra_error(400, "unsupported_grant_type", 70003,
                                  "The app requested an unsupported grant type "
                                  f"'{form.get('grant_type', '')}'. This sandbox serves client_credentials.")
            if not form.get("scope"):
                raise entra_error(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'scope'.")
            if form["scope"] != SCOPE:
                raise entra_error(400, "invalid_scope", 1002012,
                                  f"The provided value for scope {form['scope']} is not valid. Client credential "
                                  f"flows must have a scope value with /.default suffixed to the resource "
                                  f"identifier (application ID URI); Business Central: {SCOPE}.")
            check_client(tenant, client_id, secret)
        except VendorError:
            state.increment("token_errors")
            raise
        access_token, ttl = state.issue_token(tenant, client_id)
        return JSONResponse({"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                             "access_token": access_token})

    return api


def bearer_dependency(state: BusinessCentralState) -> Callable[[Request], None]:
    """A FastAPI dependency: BC's 401 unless the request carries an unexpired token this sandbox issued."""
    def require_bearer(request: Request) -> None:
        scheme, _, access_token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not state.token_is_valid(access_token.strip()):
            state.increment("auth_failures")
            raise odata_error(401, *AUTH_INVALID, headers={
                "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/'
                                    f'{state.tenant_id}/oauth2/authorize", '
                                    'resource_id="https://api.businesscentral.dynamics.com"'})
    return require_bearer
