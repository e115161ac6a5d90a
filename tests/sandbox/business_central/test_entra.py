"""Microsoft Entra in the Business Central sandbox: tokens, Entra's error shapes, refusing every client but
the sandbox app, and the bearer check of the API."""

from __future__ import annotations

import pytest
from tests.sandbox.business_central.client import SCOPE, TENANT, VENDOR

from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET

# -- Entra token endpoint -----------------------------------------------------------------------------


def test_token_expires_in_follows_the_knob_and_is_counted(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, token_ttl_seconds=120)
    body = bc_api.token_response().json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120 and body["ext_expires_in"] == 120
    assert body["access_token"]
    assert sandbox.counters(VENDOR)["tokens_issued"] == 2  # the fixture's and this one


def test_wrong_secret_is_invalid_client(sandbox, bc_api):
    response = bc_api.token_response(client_secret="wrong-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client" and response.json()["error_codes"] == [7000215]
    assert response.json()["error_description"].startswith("AADSTS7000215: Invalid client secret provided")
    assert f"app '{BUSINESS_CENTRAL_CLIENT_ID}'" in response.json()["error_description"]
    assert sandbox.counters(VENDOR)["token_errors"] == 1


@pytest.mark.parametrize("client_id", ["another-app", BUSINESS_CENTRAL_CLIENT_SECRET, BUSINESS_CENTRAL_CLIENT_ID.upper()])
def test_unknown_client_id_is_unauthorized_client(sandbox, bc_api, client_id):
    response = bc_api.token_response(client_id=client_id)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unauthorized_client" and body["error_codes"] == [700016]
    assert body["error_description"].startswith(
        f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{TENANT}'.")
    assert sandbox.counters(VENDOR)["tokens_issued"] == 1  # the fixture's only


def test_the_documented_sandbox_app_gets_a_token(bc_api):
    assert (BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET) == (
        "sandbox-entra-client-id", "sandbox-entra-client-secret")
    response = bc_api.token_response(client_id=BUSINESS_CENTRAL_CLIENT_ID,
                                     client_secret=BUSINESS_CENTRAL_CLIENT_SECRET)
    assert response.status_code == 200 and response.json()["access_token"]


@pytest.mark.parametrize("form,status,error", [
    ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope"),
    ({"scope": ""}, 400, "invalid_request"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"client_id": ""}, 400, "invalid_request"),
    ({"client_secret": ""}, 401, "invalid_client"),
    ({"tenant": "other-tenant"}, 400, "invalid_request"),
])
def test_token_request_errors_use_the_entra_shape(bc_api, form, status, error):
    response = bc_api.token_response(**form)
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["error_description"].startswith("AADSTS")


def test_client_secret_basic_is_accepted_too(bc_api):
    response = bc_api.session.post(f"{bc_api.base}/{TENANT}/oauth2/v2.0/token",
                                   data={"grant_type": "client_credentials", "scope": SCOPE},
                                   auth=(BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET), timeout=10)
    assert response.status_code == 200


# -- authentication and routing ---------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-issued-here", "Basic dXNlcjpwYXNz"])
def test_api_needs_a_token_issued_by_the_sandbox(sandbox, bc_api, authorization):
    # A non-empty dict, so that the client does not add its own token.
    headers = {"Authorization": authorization} if authorization else {"Accept": "application/json"}
    response = bc_api.get("companies", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "Authentication_InvalidCredentials",
                                         "message": "The credentials provided are incorrect"}}
    assert sandbox.counters(VENDOR)["auth_failures"] == 1


def test_expired_token_is_refused_and_a_new_one_works(sandbox, bc_api):
    assert bc_api.get("companies").status_code == 200
    sandbox.set_knobs(VENDOR, clock_offset_seconds=3600.0)  # past the default 3599 s lifetime
    assert bc_api.get("companies").status_code == 401
    bc_api.token = bc_api.fetch_token()
    assert bc_api.get("companies").status_code == 200


def test_expire_all_tokens_knob_expires_issued_tokens(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, expire_all_tokens=True)
    assert bc_api.get("companies").status_code == 401
    assert sandbox.knobs(VENDOR)["expire_all_tokens"] is False
