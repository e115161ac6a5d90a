"""ConnectorHook over HttpHook: base URL from the connection, transport extras, no extra ever sent as a header."""

from __future__ import annotations

import time

import pytest
import requests
from airflow.providers.http.hooks.http import HttpHook
from tests.hooks.loopback import Answer

from ml_connector import http
from ml_connector.errors import ConfigurationError, PermanentApiError, RetryableApiError, api_error
from ml_connector.hooks.auth import ApiKeyAuth, AuthStyle
from ml_connector.hooks.base import ConnectorHook
from ml_connector.secrets import TokenRequestsRefused, refused

FAST = http.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)

#: extras that are data for the hook: none of them may ever show up in a request header
SECRET_EXTRAS = {
    "account_number": "A1B2C3",
    "client_secret": "extra-client-s3cret",
    "tenant_id": "tenant-4242",
    "refresh_token": "extra-refresh-t0ken",
    "X-Custom-Header": "would-be-a-header",
}


class PlainHook(ConnectorHook):
    conn_name_attr = "plain_conn_id"
    default_conn_name = "plain_default"
    conn_type = "plain"
    hook_name = "Plain"
    vendor = "plain"

    def __init__(self, plain_conn_id: str = default_conn_name, **kwargs):
        super().__init__(plain_conn_id, **kwargs)
        self.plain_conn_id = plain_conn_id


class TokenHook(PlainHook):
    """A client-credentials hook against the loopback server (form-posted client id/secret)."""

    def build_auth(self) -> AuthStyle:
        return self.client_credentials_auth()

    @property
    def token_cache_key(self) -> str:
        return f"plain:token:{self.base_url}:{self.credentials()[0]}"

    def fetch_token(self) -> tuple[str, float]:
        client_id, secret = self.credentials()
        response = self.send("POST", f"{self.base_url}/token", idempotent=True, retry=self.token_retry,
                             data={"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": secret})
        if response.status_code != 200:
            raise refused(api_error("token refused", vendor="plain", status=response.status_code),
                          retry_after=http.retry_after_seconds(response))
        body = response.json()
        return body["access_token"], time.time() + body["expires_in"]


def test_it_is_an_http_hook_with_the_hook_contract():
    hook = PlainHook(plain_conn_id="some_conn")
    assert isinstance(hook, HttpHook)
    assert hook.conn_id == hook.http_conn_id == hook.plain_conn_id == "some_conn"
    assert (PlainHook.conn_name_attr, PlainHook.default_conn_name, PlainHook.conn_type, PlainHook.hook_name) == (
        "plain_conn_id", "plain_default", "plain", "Plain")


# -- base URL: HttpHook's rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    ({"host": "https://api.example.com"}, "https://api.example.com"),
    ({"host": "https://api.example.com/"}, "https://api.example.com"),
    ({"host": "https://api.example.com/base/"}, "https://api.example.com/base"),
    ({"host": "api.example.com"}, "https://api.example.com"),  # HttpHook would say http://
    ({"host": "erp.local", "schema": "http", "port": 8080}, "http://erp.local:8080"),
    ({"host": "https://erp.local", "port": 8443}, "https://erp.local:8443"),
    ({"host": "http://127.0.0.1:5000", "port": 5000}, "http://127.0.0.1:5000"),  # the port is not doubled
])
def test_base_url_follows_http_hook(set_connection, fields, expected):
    set_connection("plain_default", **fields)
    assert PlainHook().base_url == expected
    assert PlainHook().url_from_endpoint("/v1/x") == f"{expected}/v1/x"


def test_empty_host_falls_back_to_the_default_host(set_connection):
    class Vendor(PlainHook):
        default_host = "https://api.vendor.example"

    set_connection("plain_default", login="x")
    assert Vendor().base_url == "https://api.vendor.example"
    with pytest.raises(ConfigurationError, match="has no host"):
        PlainHook().base_url  # noqa: B018


def test_changing_only_the_host_points_the_hook_at_another_server(set_connection, loopback, other_loopback):
    for server in (loopback, other_loopback):
        server.route("GET", "/ping", lambda r: Answer(200, {"ok": True}))
    set_connection("plain_default", host=loopback.url)
    PlainHook(retry=FAST).send("GET", PlainHook().url_from_endpoint("/ping"))
    set_connection("plain_default", host=other_loopback.url)
    hook = PlainHook(retry=FAST)
    hook.send("GET", f"{hook.base_url}/ping")
    assert len(loopback.requests) == 1 and len(other_loopback.requests) == 1


# -- no extra is ever a header -----------------------------------------------------------------------------


def test_http_hook_itself_would_send_the_extras_as_headers(set_connection, loopback):
    """The trap this base class closes: HttpHook turns every unknown extra into a header."""
    set_connection("plain_default", host=loopback.url, extra=SECRET_EXTRAS)
    session = HttpHook(http_conn_id="plain_default").get_conn()
    assert session.headers["client_secret"] == SECRET_EXTRAS["client_secret"]


def test_no_extra_ever_appears_in_a_request_header(set_connection, loopback, sqlite_ledger):
    loopback.route("POST", "/token", lambda r: Answer(200, {"access_token": "tok-1", "expires_in": 3600}))
    loopback.route("GET", "/data", lambda r: Answer(200, {"ok": True}))
    loopback.route("POST", "/data", lambda r: Answer(201, {"ok": True}))
    set_connection("plain_default", host=loopback.url, login="client-id", password="client-secret-pw",
                   extra={**SECRET_EXTRAS, "timeout": 5, "verify": True, "trust_env": False})
    hook = TokenHook(ledger=sqlite_ledger, retry=FAST)
    hook.send_authorized("GET", f"{hook.base_url}/data")
    hook.send_authorized("POST", f"{hook.base_url}/data", json={"x": 1})
    hook.run("/data")
    assert [r.path for r in loopback.requests] == ["/token", "/data", "/data", "/data"]
    names = {k.lower() for k in SECRET_EXTRAS} | {"timeout", "verify", "trust_env"}
    for request in loopback.requests:
        assert not names & {h.lower() for h in request.headers}, request.headers
        for value in [*SECRET_EXTRAS.values(), "client-secret-pw"]:
            assert all(value not in v for v in request.headers.values()), (value, request.headers)
    # login/password are not sent as Basic auth (HttpHook's default) on the API calls: only the bearer token
    assert all(r.header("Authorization") == "Bearer tok-1" for r in loopback.seen("GET", "/data"))


def test_extras_are_read_with_the_ui_prefix_too(set_connection):
    set_connection("plain_default", host="https://x", conn_type="plain",
                   extra={"extra__plain__account_number": "Z9Y8X7", "empty": ""})
    hook = PlainHook()
    assert hook.extra("account_number") == "Z9Y8X7"
    assert hook.extra("empty", "dflt") == "dflt"
    with pytest.raises(ConfigurationError, match="'tenant_id' extra"):
        hook.extra("tenant_id", required=True)


def test_every_request_carries_our_user_agent(set_connection, loopback):
    loopback.route("GET", "/ping", lambda r: Answer(200, {}))
    set_connection("plain_default", host=loopback.url)
    hook = PlainHook(retry=FAST)
    hook.send("GET", f"{hook.base_url}/ping")
    assert loopback.requests[0].header("User-Agent") == http.USER_AGENT


# -- transport extras ------------------------------------------------------------------------------------


def test_transport_extras_are_applied_to_the_session(set_connection):
    set_connection("plain_default", host="https://erp.corp.local", extra={
        "verify": "/etc/ssl/corp-ca.pem", "cert": ["/etc/ssl/me.pem", "/etc/ssl/me.key"],
        "proxies": {"https": "http://proxy.corp.local:3128"}, "trust_env": "false", "timeout": [3, 30]})
    hook = PlainHook()
    session = hook.session
    assert session.verify == "/etc/ssl/corp-ca.pem"
    assert session.cert == ("/etc/ssl/me.pem", "/etc/ssl/me.key")
    assert session.proxies == {"https": "http://proxy.corp.local:3128"}
    assert session.trust_env is False
    assert hook.timeout == (3.0, 30.0)
    assert PlainHook(timeout=(1, 2)).timeout == (1, 2)  # the constructor wins


@pytest.mark.parametrize(("verify", "expected"), [(False, False), ("false", False), ("True", True), (True, True)])
def test_verify_extra_accepts_booleans_and_strings(set_connection, verify, expected):
    set_connection("plain_default", host="https://x", extra={"verify": verify})
    assert PlainHook().session.verify is expected


def test_defaults_without_transport_extras(set_connection):
    set_connection("plain_default", host="https://x")
    hook = PlainHook()
    assert hook.session.verify is True and hook.session.proxies == {} and hook.timeout == (10.0, 60.0)


@pytest.mark.parametrize("extra", [{"timeout": "soon"}, {"proxies": 42}, {"cert": {"a": 1}}, {"trust_env": "maybe"}])
def test_malformed_transport_extras_are_configuration_errors(set_connection, extra):
    set_connection("plain_default", host="https://x", extra=extra)
    hook = PlainHook()
    with pytest.raises(ConfigurationError, match="connection 'plain_default'"):
        hook.session  # noqa: B018
        hook.timeout  # noqa: B018


def test_requests_go_through_the_proxy_extra(set_connection, loopback):
    """The loopback server plays the proxy: it receives the absolute URL of a host that does not exist."""
    loopback.route("GET", "/ping", lambda r: Answer(200, {"via": "proxy"}))
    set_connection("plain_default", host="http://erp.nowhere.invalid", extra={"proxies": {"http": loopback.url}})
    hook = PlainHook(retry=FAST)
    assert hook.send("GET", f"{hook.base_url}/ping").json() == {"via": "proxy"}
    assert loopback.requests[0].target == "http://erp.nowhere.invalid/ping"


def test_timeout_extra_bounds_a_slow_answer(set_connection, loopback):
    def slow(_request):
        time.sleep(1.0)
        return Answer(200, {})

    loopback.route("GET", "/slow", slow)
    set_connection("plain_default", host=loopback.url, extra={"timeout": [2, 0.2]})
    hook = PlainHook(retry=http.NO_RETRY)
    started = time.monotonic()
    with pytest.raises(http.TransportError, match="read timeout"):
        hook.send("GET", f"{hook.base_url}/slow")
    assert time.monotonic() - started < 0.9


def test_proxy_credentials_are_masked(set_connection, masked):
    set_connection("plain_default", host="https://x", extra={"proxy": "http://me:pr0xy-pw@proxy.local:3128"})
    assert PlainHook().session.proxies == {"http": "http://me:pr0xy-pw@proxy.local:3128",
                                           "https": "http://me:pr0xy-pw@proxy.local:3128"}
    assert "pr0xy-pw" in masked


# -- HttpHook.run goes through our send ---------------------------------------------------------------------


def test_run_sends_through_the_retrying_layer_and_the_auth_style(set_connection, loopback):
    answers = iter([Answer(503, {}), Answer(200, {"ok": True})])
    loopback.route("GET", "/api/items", lambda r: next(answers))

    class KeyHook(PlainHook):
        def build_auth(self):
            return ApiKeyAuth(self.send, "k-123")

    set_connection("plain_default", host=loopback.url)
    response = KeyHook(retry=FAST).run("api/items", data={"page": "2"})
    assert response.json() == {"ok": True}
    assert [r.query for r in loopback.requests] == [{"page": "2"}] * 2
    assert loopback.requests[-1].header("API-Key") == "k-123"


def test_run_raises_a_typed_error_unless_asked_not_to(set_connection, loopback):
    loopback.route("GET", "/missing", lambda r: Answer(404, {"error": "nope"}))
    set_connection("plain_default", host=loopback.url)
    hook = PlainHook(retry=FAST)
    with pytest.raises(PermanentApiError) as err:
        hook.run("/missing")
    assert err.value.status == 404
    assert hook.run("/missing", extra_options={"check_response": False}).status_code == 404


def test_get_token_needs_a_token_auth_style(set_connection):
    set_connection("plain_default", host="https://x")
    with pytest.raises(TypeError, match="does not authenticate with a token"):
        PlainHook().get_token()


def test_client_credentials_through_the_base(set_connection, loopback, sqlite_ledger):
    tokens = iter(["tok-1", "tok-2"])
    loopback.route("POST", "/token", lambda r: Answer(200, {"access_token": next(tokens), "expires_in": 3600}))
    loopback.route("GET", "/data", lambda r: Answer(200 if r.header("Authorization") == "Bearer tok-1" else 401,
                                                     {}))
    set_connection("plain_default", host=loopback.url, login="cid", password="pw")
    hook = TokenHook(ledger=sqlite_ledger, retry=FAST)
    assert hook.get_token() == "tok-1"
    assert TokenHook(ledger=sqlite_ledger, retry=FAST).send_authorized("GET", f"{loopback.url}/data").ok
    assert len(loopback.seen("POST", "/token")) == 1
    assert isinstance(hook.session, requests.Session)


def test_a_token_request_never_retries_a_429_in_process():
    """A refused token request opens the secret store's breaker instead; 5xx and connection errors are retried."""
    assert 429 not in ConnectorHook("x").token_retry.statuses
    assert 429 not in ConnectorHook("x", retry=FAST).token_retry.statuses  # a hook's own policy too
    assert ConnectorHook("x", retry=FAST).token_retry.attempts == FAST.attempts
    assert {502, 503, 504} <= ConnectorHook("x").token_retry.statuses
    assert 429 in ConnectorHook("x").retry.statuses  # API calls still retry their 429s


def test_a_refused_token_request_through_the_base_is_shared_with_its_retry_after(set_connection, loopback,
                                                                                 sqlite_ledger):
    loopback.route("POST", "/token", lambda r: Answer(429, {"error": "slow down"}, {"Retry-After": "120"}))
    set_connection("plain_default", host=loopback.url, login="cid", password="pw")
    with pytest.raises(RetryableApiError):
        TokenHook(ledger=sqlite_ledger, retry=FAST).get_token()
    hook = TokenHook(ledger=sqlite_ledger, retry=FAST)
    with pytest.raises(TokenRequestsRefused, match=r"^Plain token requests are refused until .* \(rate limited\)"):
        hook.send_authorized("GET", f"{loopback.url}/data")
    assert len(loopback.seen("POST", "/token")) == 1 and loopback.seen("GET", "/data") == []
    assert hook.secret_store.breaker(hook.token_cache_key).until == pytest.approx(time.time() + 120, abs=5)
