"""The Exact Online sandbox behaves as Exact does where the connector depends on it."""

from __future__ import annotations

import requests
from tests.erp.exact_online.conftest import DIVISION

from ml_connector_sandbox.credentials import EXACT_ONLINE_CLIENT_ID, EXACT_ONLINE_CLIENT_SECRET
from ml_connector_sandbox.exact_online import INITIAL_REFRESH_TOKEN


def refresh(base: str, token: str, secret: str = EXACT_ONLINE_CLIENT_SECRET) -> requests.Response:
    return requests.post(f"{base}/api/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": token, "client_id": EXACT_ONLINE_CLIENT_ID,
        "client_secret": secret}, timeout=10)


def test_a_refresh_rotates_the_refresh_token_and_kills_the_old_one(exact):
    base = exact.url("exact_online")
    first = refresh(base, INITIAL_REFRESH_TOKEN)
    assert first.status_code == 200 and first.json()["expires_in"] == "600"
    new = first.json()["refresh_token"]
    assert new != INITIAL_REFRESH_TOKEN and any(c in new for c in "+/=")  # form-encode them
    again = refresh(base, INITIAL_REFRESH_TOKEN)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_refresh_within_570_seconds_is_refused_as_too_early(exact):
    base = exact.url("exact_online")
    token = refresh(base, INITIAL_REFRESH_TOKEN).json()["refresh_token"]
    early = refresh(base, token)
    assert early.status_code == 400 and early.headers["Reason"] == "TooEarlyToRefreshTokens"
    assert early.json()["error"] == "access_denied"
    exact.set_knobs("exact_online", clock_offset_seconds=571)
    assert refresh(base, token).status_code == 200


def test_a_wrong_client_secret_is_refused(exact):
    answer = refresh(exact.url("exact_online"), INITIAL_REFRESH_TOKEN, secret="wrong")
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_the_minutely_limit_answers_429_with_an_empty_body_and_its_headers_only(exact):
    base = exact.url("exact_online")
    access = refresh(base, INITIAL_REFRESH_TOKEN).json()["access_token"]
    exact.set_knobs("exact_online", minute_limit=2)
    url = f"{base}/api/v1/{DIVISION}/logistics/Items(guid'a1000000-0000-4000-8000-000000000001')"
    headers = {"Authorization": f"Bearer {access}"}
    answers = [requests.get(url, params={"$select": "ID"}, headers=headers, timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Minutely-Remaining"] == "1"
    assert int(answers[0].headers["X-RateLimit-Minutely-Reset"]) > 1e12  # epoch milliseconds
    assert answers[2].content == b"" and "X-RateLimit-Remaining" not in answers[2].headers
    assert answers[2].headers["X-RateLimit-Minutely-Remaining"] == "0"
    assert requests.get(url, params={"$select": "ID"}, timeout=10).status_code == 401  # no token
