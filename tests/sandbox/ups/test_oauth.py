"""UPS OAuth in the sandbox: token fields and lifetime, quota, and refusing every credential but the
sandbox app's, as UPS refuses them."""

from __future__ import annotations

import base64
import time

import pytest
from tests.sandbox.ups.client import SHIPPER_NUMBER, TRACK_HEADERS, UpsApi, assert_ups_error, ship_request

from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET
from ml_connector_sandbox.testing import SandboxServer


# -- OAuth -----------------------------------------------------------------------------------------
def test_token_fields_are_all_strings_and_expires_in_follows_the_knob(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", token_ttl_seconds=1800)
    before_ms = int(time.time() * 1000)
    body = api.checked("token", api.token_response(headers={"x-merchant-id": SHIPPER_NUMBER}))
    assert set(body) == {"token_type", "issued_at", "client_id", "access_token", "scope", "expires_in",
                         "refresh_count", "status"}
    assert all(isinstance(value, str) for value in body.values()), body
    assert (body["token_type"], body["client_id"], body["scope"]) == ("Bearer", UPS_CLIENT_ID, "")
    assert (body["expires_in"], body["refresh_count"], body["status"]) == ("1800", "0", "approved")
    assert abs(int(body["issued_at"]) - before_ms) < 60_000  # epoch milliseconds, not seconds
    assert ups.counters("ups")["tokens_issued"] == 1


def test_default_token_lifetime_is_3599_seconds(api: UpsApi) -> None:
    assert api.token_response().json()["expires_in"] == "3599"


def test_token_stops_working_after_its_ttl(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", token_ttl_seconds=60)
    assert api.track("1ZA1B2C30399999990")["warnings"][0]["code"] == "TW0001"  # the token works
    ups.set_knobs("ups", clock_offset_seconds=61)  # move the sandbox clock instead of sleeping
    assert_ups_error(api.track_response("1ZA1B2C30399999990"), 401, "250002")
    assert ups.counters("ups")["auth_failures"] == 1


def test_expire_all_tokens_revokes_a_token_early(api: UpsApi, ups: SandboxServer) -> None:
    api.token()
    knobs = ups.set_knobs("ups", expire_all_tokens=True)
    assert knobs["expire_all_tokens"] is False  # an action, not a state
    error = assert_ups_error(api.track_response("1ZA1B2C30399999990"), 401, "250002")
    assert error["message"] == "Invalid Authentication Information."


def test_token_quota_answers_429_10429(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", token_daily_quota=2)
    assert [api.token_response().status_code for _ in range(2)] == [200, 200]
    response = api.token_response()
    assert_ups_error(response, 429, "10429")
    assert response.json()["response"]["errors"][0]["message"] == "Too Many Requests"
    counters = ups.counters("ups")
    assert (counters["tokens_issued"], counters["token_quota_exceeded"], counters["rate_limited"]) == (2, 1, 1)


@pytest.mark.parametrize("authorization", [None, "Basic not-base64!", "Bearer abc",
                                           "Basic " + base64.b64encode(b"client-without-secret").decode()])
def test_token_endpoint_rejects_missing_or_malformed_basic_auth(api: UpsApi, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = api.session.post(f"{api.base}/security/v1/oauth/token", data={"grant_type": "client_credentials"},
                                headers=headers, timeout=10)
    assert_ups_error(response, 401, "10401")


@pytest.mark.parametrize("client_id,secret", [
    (UPS_CLIENT_ID, "wrong-secret"),                  # the right app, a wrong secret
    ("another-client-id", UPS_CLIENT_SECRET),         # an app the sandbox does not know
    (UPS_CLIENT_SECRET, UPS_CLIENT_ID),               # swapped
    (UPS_CLIENT_ID, UPS_CLIENT_SECRET + " "),         # no trimming: a pasted space is a wrong secret
])
def test_token_endpoint_refuses_every_credential_but_the_sandbox_apps(api: UpsApi, ups: SandboxServer,
                                                                       client_id: str, secret: str) -> None:
    error = assert_ups_error(api.token_response(client_id=client_id, secret=secret), 401, "10401")
    assert error["message"] == "ClientId is Invalid"  # what UPS answers, whichever half is wrong
    counters = ups.counters("ups")
    assert (counters["auth_failures"], counters["tokens_issued"]) == (1, 0)
    assert ups.validation_errors("ups") == []  # a refusal, not a malformed request


def test_token_endpoint_accepts_the_documented_sandbox_credentials(api: UpsApi) -> None:
    assert (UPS_CLIENT_ID, UPS_CLIENT_SECRET) == ("sandbox-client-id", "sandbox-client-secret")
    response = api.token_response(client_id=UPS_CLIENT_ID, secret=UPS_CLIENT_SECRET)
    assert response.status_code == 200 and api.checked("token", response)["access_token"]


def test_token_endpoint_requires_grant_type(api: UpsApi, ups: SandboxServer) -> None:
    assert api.token_response(data={}).status_code == 400
    assert api.token_response(data={"grant_type": "password"}).status_code == 400
    recorded = ups.validation_errors("ups")
    assert any("grant_type" in error for entry in recorded for error in entry["errors"]), recorded


def test_api_routes_need_a_bearer_token(api: UpsApi) -> None:
    response = api.session.post(f"{api.base}/api/shipments/v2409/ship", json=ship_request(), timeout=10)
    assert_ups_error(response, 401, "250002")
    response = api.session.get(f"{api.base}/api/track/v1/details/1ZA1B2C30399999990",
                               headers={"Authorization": "Bearer made-up", **TRACK_HEADERS}, timeout=10)
    assert_ups_error(response, 401, "250002")
