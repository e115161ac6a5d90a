"""The auth styles against tiny loopback servers that behave like the vendors' (not against vendor sandboxes)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from tests.hooks.clock import MovableClock
from tests.hooks.loopback import Answer

from ml_connector import http
from ml_connector.errors import (
    AmbiguousRequestError,
    AuthenticationError,
    ConfigurationError,
    RetryableApiError,
    RetryableError,
    api_error,
)
from ml_connector.hooks.auth import (
    ApiKeyAuth,
    BasicAuth,
    ClientCredentialsAuth,
    RotatingRefreshTokenAuth,
    SessionLogon,
)
from ml_connector.ledger import schema
from ml_connector.secrets import SecretStore, TokenRequestsRefused

FAST = http.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)


def sender(retry: http.RetryPolicy = FAST, timeout=(5.0, 5.0)):
    session = http.new_session()

    def send(method, url, **kwargs):
        kwargs.setdefault("retry", retry)
        kwargs.setdefault("timeout", timeout)
        return http.send(session, method, url, vendor="test", **kwargs)

    return send


# -- API key and Basic -------------------------------------------------------------------------------------


def test_api_key_goes_in_its_header(loopback, masked):
    loopback.route("GET", "/v2/shipments", lambda r: Answer(200 if r.header("API-Key") == "ss-key-1" else 401))
    auth = ApiKeyAuth(sender(), "ss-key-1")
    assert auth.send("GET", f"{loopback.url}/v2/shipments").status_code == 200
    assert "ss-key-1" in masked


def test_api_key_header_name_is_configurable(loopback):
    loopback.route("GET", "/x", lambda r: Answer(200 if r.header("X-Api-Key") == "k" else 401))
    assert ApiKeyAuth(sender(), "k", header="X-Api-Key").send("GET", f"{loopback.url}/x").ok


def test_basic_auth_sends_key_and_secret_and_masks_the_encoded_form(loopback, masked):
    expected = "Basic " + base64.b64encode(b"ss-key:ss-secret").decode()
    loopback.route("GET", "/orders", lambda r: Answer(200 if r.header("Authorization") == expected else 401))
    auth = BasicAuth(sender(), "ss-key", "ss-secret")
    assert auth.send("GET", f"{loopback.url}/orders", headers={"Authorization": "ignored"}).ok
    assert "ss-secret" in masked and expected.split()[1] in masked


@pytest.mark.parametrize("make", [lambda s: ApiKeyAuth(s, ""), lambda s: BasicAuth(s, "key", "")])
def test_missing_static_credentials_are_configuration_errors(make):
    with pytest.raises(ConfigurationError):
        make(sender())


# -- client credentials ------------------------------------------------------------------------------------


class ClientCredentialsServer:
    """Issues tokens that live ``ttl`` seconds; ``/api`` accepts only live tokens; ``revoke()`` forgets them."""

    def __init__(self, loopback, ttl: float = 3600):
        self.loopback, self.ttl, self.live = loopback, ttl, set()
        self.counter = itertools.count(1)
        loopback.route("POST", "/token", self.token)
        loopback.route("POST", "/api", self.api)
        loopback.route("GET", "/api", self.api)

    def token(self, _request):
        token = f"cc-token-{next(self.counter)}"
        self.live.add(token)
        return Answer(200, {"access_token": token, "expires_in": self.ttl})

    def api(self, request):
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        return Answer(200, {"token": token}) if token in self.live else Answer(401, {"error": "expired"})

    def revoke(self):
        self.live.clear()

    @property
    def issued(self) -> int:
        return len(self.loopback.seen("POST", "/token"))


def client_credentials(server, store, send=None, margin=300.0):
    send = send or sender()

    def fetch():
        response = send("POST", f"{server.loopback.url}/token", idempotent=True)
        if response.status_code != 200:
            raise api_error("token request failed", vendor="test", status=response.status_code)
        body = response.json()
        return body["access_token"], store.clock() + body["expires_in"]

    return ClientCredentialsAuth(send, store=store, cache_key="test:cc", fetch=fetch, margin=margin, vendor="test")


@pytest.fixture
def store(sqlite_ledger):
    return SecretStore(sqlite_ledger)


def test_client_credentials_token_is_fetched_once_and_shared(loopback, store, masked):
    server = ClientCredentialsServer(loopback)
    first, second = client_credentials(server, store), client_credentials(server, store)
    assert first.send("GET", f"{loopback.url}/api").json() == {"token": "cc-token-1"}
    assert second.send("POST", f"{loopback.url}/api", json={}).json() == {"token": "cc-token-1"}
    assert server.issued == 1 and "cc-token-1" in masked


def test_client_credentials_token_is_renewed_before_it_expires(loopback, store):
    server = ClientCredentialsServer(loopback, ttl=200)  # inside the 300 s margin: stale at once
    auth = client_credentials(server, store)
    auth.token()
    auth.token()
    assert server.issued == 2


def test_a_401_renews_once_and_retries_once_even_a_post(loopback, store):
    server = ClientCredentialsServer(loopback)
    auth = client_credentials(server, store)
    auth.send("GET", f"{loopback.url}/api")
    server.revoke()
    assert auth.send("POST", f"{loopback.url}/api", json={"buy": 1}).json() == {"token": "cc-token-2"}
    assert server.issued == 2 and len(loopback.seen("POST", "/api")) == 2


def test_a_second_401_is_returned_not_looped(loopback, store):
    server = ClientCredentialsServer(loopback)
    loopback.route("GET", "/api", lambda r: Answer(401, {"error": "no scope"}))
    assert client_credentials(server, store).send("GET", f"{loopback.url}/api").status_code == 401
    assert server.issued == 2 and len(loopback.seen("GET", "/api")) == 2


def test_a_token_another_worker_already_renewed_is_not_renewed_again(loopback, store):
    server = ClientCredentialsServer(loopback)
    mine, theirs = client_credentials(server, store), client_credentials(server, store)
    stale = mine.token()
    server.revoke()
    renewed = theirs.token(force=True, rejected=stale)  # the other worker got the 401 first
    assert mine.token(force=True, rejected=stale) == renewed
    assert server.issued == 2


def test_a_refused_token_request_is_not_repeated_by_the_other_workers(loopback, sqlite_ledger):
    clock = MovableClock()
    store = SecretStore(sqlite_ledger, clock=clock)
    server = ClientCredentialsServer(loopback)
    loopback.route("POST", "/token", lambda r: Answer(429, {"error": "too many token requests"}))
    no_429 = sender(http.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02,
                                     statuses=http.RETRY_STATUSES - {429}))  # what ConnectorHook.token_retry gives
    with pytest.raises(RetryableApiError):
        client_credentials(server, store, send=no_429).token()
    for _ in range(3):  # other workers: no request while the breaker is open
        with pytest.raises(TokenRequestsRefused, match=r"^test token requests are refused until .* \(rate limited\)"):
            client_credentials(server, store, send=no_429).send("GET", f"{loopback.url}/api")
    assert server.issued == 1 and loopback.seen("GET", "/api") == []
    clock.advance(60)  # the window has passed: one probe, which succeeds and closes the breaker
    loopback.route("POST", "/token", server.token)
    assert client_credentials(server, store, send=no_429).send("GET", f"{loopback.url}/api").json() == {
        "token": "cc-token-1"}
    assert server.issued == 2 and store.breaker("test:cc") is None


# -- rotating refresh tokens (Exact Online) ------------------------------------------------------------------


class RotatingServer:
    """An OAuth server whose refresh tokens are single-use: each refresh answers a new refresh token and kills
    the old one. It records every refresh token presented twice (must never happen)."""

    def __init__(self, loopback, *, seed: str = "seed-rt", ttl: float = 600):
        self.loopback, self.ttl = loopback, ttl
        self.valid_refresh = {seed}
        self.spent: set[str] = set()
        self.reused: list[str] = []
        self.live_access: set[str] = set()
        self.latest_refresh: str | None = None
        self.counter = itertools.count(1)
        self.next_answer = None  # a one-off answer replacing the normal one (after rotating)
        self.on_api = None
        loopback.route("POST", "/oauth2/token", self.token)
        loopback.route("GET", "/api/me", self.api)

    def token(self, request):
        form = request.form
        assert form["grant_type"] == "refresh_token" and form["client_id"] == "exact-client"
        presented = form["refresh_token"]
        if presented in self.spent:
            self.reused.append(presented)
        if presented not in self.valid_refresh:
            return Answer(400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
        self.valid_refresh.discard(presented)
        self.spent.add(presented)
        n = next(self.counter)
        new_refresh, access = f"rt-{n}", f"at-{n}"
        self.valid_refresh.add(new_refresh)
        self.live_access.add(access)
        self.latest_refresh = new_refresh
        if self.next_answer is not None:
            answer, self.next_answer = self.next_answer(new_refresh, access), None
            return answer
        return Answer(200, {"access_token": access, "token_type": "bearer", "expires_in": str(int(self.ttl)),
                            "refresh_token": new_refresh})

    def api(self, request):
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        if self.on_api:
            self.on_api(token)
        return Answer(200, {"token": token}) if token in self.live_access else Answer(401, {"error": "expired"})

    @property
    def refreshes(self) -> int:
        return len(self.loopback.seen("POST", "/oauth2/token"))


def rotating(server, store, *, seed: str | None = "seed-rt", send=None, margin=60.0, conn_id="exact_default",
             retry=None):
    return RotatingRefreshTokenAuth(
        send or sender(), store=store, cache_key="exact:token:test", token_url=f"{server.loopback.url}/oauth2/token",
        client_id="exact-client", client_secret="exact-secret", initial_refresh_token=seed, conn_id=conn_id,
        margin=margin, label="Exact Online", retry=retry)


def stored_entry(store) -> dict:
    return json.loads(store.get("exact:token:test").value)


def test_first_refresh_spends_the_connection_token_and_stores_the_new_one_encrypted(loopback, store, sqlite_ledger):
    server = RotatingServer(loopback)
    auth = rotating(server, store)
    assert auth.send("GET", f"{loopback.url}/api/me").json() == {"token": "at-1"}
    assert stored_entry(store)["refresh_token"] == "rt-1"
    with sqlite_ledger.read() as conn:
        ciphertext = conn.execute(sa.select(schema.secrets.c.ciphertext)).scalar_one()
    assert "rt-1" not in ciphertext and "at-1" not in ciphertext


def test_the_new_refresh_token_is_stored_before_the_access_token_is_used(loopback, store):
    server = RotatingServer(loopback, ttl=30)  # inside the margin: every call refreshes
    seen_in_store = []
    server.on_api = lambda _token: seen_in_store.append((server.latest_refresh, stored_entry(store)["refresh_token"]))
    auth = rotating(server, store)
    for _ in range(3):
        auth.send("GET", f"{loopback.url}/api/me")
    assert seen_in_store == [("rt-1", "rt-1"), ("rt-2", "rt-2"), ("rt-3", "rt-3")]


def test_later_refreshes_use_the_stored_token_never_the_spent_one(loopback, store):
    server = RotatingServer(loopback, ttl=30)
    auth = rotating(server, store)
    for _ in range(4):
        auth.token()
    other_hook = rotating(server, store)  # a new task: the connection still holds the spent seed
    other_hook.token()
    assert server.refreshes == 5 and server.reused == []
    assert stored_entry(store)["refresh_token"] == "rt-5"


def test_a_cached_access_token_is_used_without_refreshing(loopback, store):
    server = RotatingServer(loopback, ttl=600)
    rotating(server, store).token()
    assert rotating(server, store).send("GET", f"{loopback.url}/api/me").json() == {"token": "at-1"}
    assert server.refreshes == 1


def test_a_401_refreshes_once_and_retries(loopback, store):
    server = RotatingServer(loopback, ttl=600)
    auth = rotating(server, store)
    auth.token()
    server.live_access.clear()
    assert auth.send("GET", f"{loopback.url}/api/me").json() == {"token": "at-2"}
    assert server.refreshes == 2 and server.reused == []


@pytest.mark.parametrize("unusable", [
    lambda rt, at: Answer(200, {"refresh_token": rt, "token_type": "bearer"}),  # no access token
    lambda rt, at: Answer(200, {"refresh_token": rt, "access_token": at, "expires_in": "soon"}),
    lambda rt, at: Answer(500, {"refresh_token": rt, "error": "server_error"}),
])
def test_a_new_refresh_token_is_stored_even_when_the_rest_of_the_answer_is_unusable(loopback, store, unusable):
    server = RotatingServer(loopback)
    server.next_answer = unusable
    auth = rotating(server, store)
    with pytest.raises(RetryableError, match="new refresh token .stored."):
        auth.token()
    assert stored_entry(store)["refresh_token"] == "rt-1"
    # the next attempt (an Airflow retry) spends the stored token, not the dead seed
    assert auth.token() == "at-2"
    assert server.reused == []


def test_an_invalid_refresh_token_says_how_to_fix_it(loopback, store):
    server = RotatingServer(loopback, seed="something-else")
    with pytest.raises(AuthenticationError) as err:
        rotating(server, store).token()
    message = str(err.value)
    assert "exact_default" in message and "invalid_grant" in message
    assert "authorize the app again" in message and "'refresh_token' extra" in message
    assert "seed-rt" not in message and not err.value.retryable
    assert store.get("exact:token:test") is None  # nothing half-written


def test_no_refresh_token_at_all_is_a_configuration_error(loopback, store):
    server = RotatingServer(loopback)
    with pytest.raises(ConfigurationError, match="has no refresh token"):
        rotating(server, store, seed=None).token()
    assert server.refreshes == 0


def test_a_new_token_pasted_into_the_connection_replaces_the_stored_one(loopback, store):
    server = RotatingServer(loopback, ttl=600)
    rotating(server, store).token()
    server.valid_refresh = {"re-authorized-rt"}  # a person authorized the app again; rt-1 is dead
    assert rotating(server, store, seed="re-authorized-rt").token() == "at-2"
    assert stored_entry(store)["refresh_token"] == "rt-2"
    assert rotating(server, store, seed="re-authorized-rt").token() == "at-2"  # and is not spent twice
    assert server.reused == []


def test_a_lost_refresh_answer_is_ambiguous_not_retried(loopback, store):
    server = RotatingServer(loopback)

    def slow(request):
        time.sleep(0.6)
        return server.token(request)

    loopback.route("POST", "/oauth2/token", slow)
    auth = rotating(server, store, send=sender(timeout=(2.0, 0.2)))
    with pytest.raises(AmbiguousRequestError, match="authorize the app again"):
        auth.token()
    time.sleep(0.5)
    assert len(loopback.seen("POST", "/oauth2/token")) == 1  # the old refresh token was not sent twice


class RacyStore(SecretStore):
    """A store whose refresh is not exclusive: another worker rotates the token between our read and our
    refresh, so we spend a refresh token that is already dead."""

    def __init__(self, ledger, other):
        super().__init__(ledger)
        self.other = other

    def get_or_refresh(self, name, refresh, *, margin, force=False, stale_value=None, label=None):
        current = self.get(name)
        if current is not None and current.fresh(margin) and not force:
            return current.value
        self.other.token(force=True)  # the other worker wins the race and stores rt-2
        value, expires_at = refresh(current)  # we spend rt-1 again: invalid_grant
        self.put(name, value, expires_at=expires_at)
        return value


def test_a_refresh_token_spent_by_a_racing_worker_is_not_a_reauthorization(loopback, sqlite_ledger):
    server = RotatingServer(loopback, ttl=600)
    store = SecretStore(sqlite_ledger)
    rotating(server, store).token()  # rt-1 stored
    store.put("exact:token:test", json.dumps({**stored_entry(store), "access_token": None}), expires_at=0.0)
    racy = RacyStore(sqlite_ledger, other=rotating(server, store))
    assert rotating(server, racy).token() == "at-2"  # the racing worker's token, no AuthenticationError
    assert server.reused == ["rt-1"]  # the race happened...
    assert stored_entry(store)["refresh_token"] == "rt-2"  # ...and the live refresh token survived it


def test_concurrent_workers_spend_each_refresh_token_once(loopback, ledger):
    """Threads stand in for workers: all find the access token stale at the same moment."""
    server = RotatingServer(loopback, ttl=600)
    store = SecretStore(ledger)
    errors, tokens = [], []
    barrier = threading.Barrier(6)

    def worker():
        try:
            auth = rotating(server, store)
            barrier.wait()
            tokens.append(auth.token())
        except Exception as exc:  # report, do not hang the barrier
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and set(tokens) == {"at-1"}
    assert server.refreshes == 1 and server.reused == []


# -- session logon / logoff (SYSPRO e.net GUID, Acumatica cookie) ---------------------------------------------


class SysproServer:
    """e.net style: ``/Logon`` answers a session GUID as text, queries pass ``UserId``, an expired GUID is
    answered 200 with an ``ERROR`` text, ``/Logoff`` ends it."""

    def __init__(self, loopback):
        self.loopback, self.sessions, self.logoffs = loopback, set(), []
        loopback.route("GET", "/SYSPROWCFService/Rest/Logon", self.logon)
        loopback.route("GET", "/SYSPROWCFService/Rest/Query/Query", self.query)
        loopback.route("GET", "/SYSPROWCFService/Rest/Logoff", self.logoff)

    def logon(self, request):
        if request.query.get("OperatorPassword") != "op-pw":
            return Answer(200, "ERROR: Invalid operator password")
        guid = uuid.uuid4().hex.upper()
        self.sessions.add(guid)
        return Answer(200, guid)

    def query(self, request):
        if request.query.get("UserId") not in self.sessions:
            return Answer(200, "ERROR: e.net exception 100000 - Invalid UserId (the session has expired)")
        return Answer(200, "<SorDetail/>")

    def logoff(self, request):
        self.logoffs.append(request.query.get("UserId"))
        self.sessions.discard(request.query.get("UserId"))
        return Answer(200, "0")

    @property
    def logons(self) -> int:
        return len(self.loopback.seen("GET", "/SYSPROWCFService/Rest/Logon"))


def syspro(server, password="op-pw"):
    send = sender()
    base = f"{server.loopback.url}/SYSPROWCFService/Rest"

    def logon():
        text = send("GET", f"{base}/Logon", params={"Operator": "ADMIN", "OperatorPassword": password,
                                                   "CompanyId": "EDU1"}).text.strip()
        if text.startswith("ERROR"):
            raise AuthenticationError(f"SYSPRO refused the logon: {text}", vendor="syspro", status=200)
        return text

    def apply(guid, kwargs):
        kwargs["params"] = {**(kwargs.get("params") or {}), "UserId": guid}
        return kwargs

    def logoff(guid):
        response = send("GET", f"{base}/Logoff", params={"UserId": guid})
        if not response.ok:
            raise RetryableError(f"SYSPRO logoff answered HTTP {response.status_code}")

    return SessionLogon(send, logon=logon, logoff=logoff, apply=apply, expired=lambda r: r.text.startswith("ERROR") and "expired" in r.text,
                        vendor="syspro"), f"{base}/Query/Query"


def test_session_logs_on_once_reuses_it_and_logs_off(loopback, masked):
    server = SysproServer(loopback)
    auth, query = syspro(server)
    with auth as session:
        for _ in range(3):
            assert session.send("GET", query, params={"XmlIn": "<Query/>"}).text == "<SorDetail/>"
        guid = auth.handle
    assert server.logons == 1 and server.logoffs == [guid] and server.sessions == set()
    assert guid in masked
    assert all(r.query["XmlIn"] == "<Query/>" for r in loopback.seen("GET", "/SYSPROWCFService/Rest/Query/Query"))


def test_session_is_logged_off_when_the_block_fails(loopback):
    server = SysproServer(loopback)
    auth, query = syspro(server)
    with pytest.raises(ValueError, match="mapping failed"), auth as session:
        session.send("GET", query)
        raise ValueError("mapping failed")
    assert len(server.logoffs) == 1 and server.sessions == set()


def test_an_expired_session_is_renewed_once(loopback):
    server = SysproServer(loopback)
    auth, query = syspro(server)
    with auth as session:
        session.send("GET", query)
        server.sessions.clear()  # SYSPRO timed the session out
        assert session.send("GET", query).text == "<SorDetail/>"
    assert server.logons == 2 and len(server.logoffs) == 1  # the expired one needs no logoff


def test_a_session_that_expires_again_right_away_is_an_authentication_error(loopback):
    server = SysproServer(loopback)
    loopback.route("GET", "/SYSPROWCFService/Rest/Query/Query",
                   lambda r: Answer(200, "ERROR: Invalid UserId (the session has expired)"))
    auth, query = syspro(server)
    with pytest.raises(AuthenticationError, match="expired again"), auth as session:
        session.send("GET", query)
    assert server.logons == 2 and len(server.logoffs) == 1


def test_a_refused_logon_needs_no_logoff(loopback):
    server = SysproServer(loopback)
    auth, query = syspro(server, password="wrong")
    with pytest.raises(AuthenticationError, match="Invalid operator password"), auth as session:
        session.send("GET", query)
    assert server.logoffs == []


def test_a_failing_logoff_does_not_hide_the_result(loopback, caplog):
    server = SysproServer(loopback)
    loopback.route("GET", "/SYSPROWCFService/Rest/Logoff", lambda r: Answer(503, "down"))
    auth, query = syspro(server)
    with auth as session:
        assert session.send("GET", query).ok
    assert "logoff failed" in caplog.text


def test_sending_outside_the_block_is_refused(loopback):
    auth, query = syspro(SysproServer(loopback))
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        auth.send("GET", query)


def test_cookie_sessions_work_through_the_same_piece(loopback):
    """Acumatica style: the logon sets a cookie that the session carries; 401 means it expired."""
    cookies = set()

    def login(request):
        cookie = uuid.uuid4().hex
        cookies.add(cookie)
        return Answer(204, headers={"Set-Cookie": f".ASPXAUTH={cookie}; Path=/"})

    def orders(request):
        cookie = (request.header("Cookie") or "").partition("=")[2]
        return Answer(200, [{"OrderNbr": "SO001"}]) if cookie in cookies else Answer(401, {"message": "expired"})

    loopback.route("POST", "/entity/auth/login", login)
    loopback.route("GET", "/entity/Default/23.200.001/SalesOrder", orders)
    loopback.route("POST", "/entity/auth/logout", lambda r: Answer(204))
    send = sender()
    auth = SessionLogon(send, logon=lambda: send("POST", f"{loopback.url}/entity/auth/login", idempotent=True,
                                                 json={"name": "admin", "password": "pw", "company": "Co"}) and "cookie",
                        logoff=lambda _handle: send("POST", f"{loopback.url}/entity/auth/logout", idempotent=True),
                        vendor="acumatica")
    url = f"{loopback.url}/entity/Default/23.200.001/SalesOrder"
    with auth as session:
        assert session.send("GET", url).json() == [{"OrderNbr": "SO001"}]
        cookies.clear()
        assert session.send("GET", url).json() == [{"OrderNbr": "SO001"}]
    assert len(loopback.seen("POST", "/entity/auth/login")) == 2
    assert len(loopback.seen("POST", "/entity/auth/logout")) == 1


def test_a_refused_refresh_is_shared_and_the_refresh_token_stays_unspent(loopback, sqlite_ledger):
    """Refreshes refused with 429 (Retry-After 90): one request, then every worker waits the 90 s out."""
    clock = MovableClock()
    store = SecretStore(sqlite_ledger, clock=clock)
    server = RotatingServer(loopback)
    loopback.route("POST", "/oauth2/token",
                   lambda r: Answer(429, {"error": "rate_limited"}, {"Retry-After": "90"}))
    no_429 = http.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, statuses=http.RETRY_STATUSES - {429})
    with pytest.raises(RetryableApiError):
        rotating(server, store, retry=no_429).token()
    for _ in range(3):
        with pytest.raises(TokenRequestsRefused, match=r"^Exact Online token requests are refused until"):
            rotating(server, store, retry=no_429).token()
    assert server.refreshes == 1  # not retried in-process, not repeated by the other workers
    assert store.breaker("exact:token:test").until == pytest.approx(clock() + 90, abs=2)
    clock.advance(90)
    loopback.route("POST", "/oauth2/token", server.token)
    assert rotating(server, store, retry=no_429).token() == "at-1"  # the seed was never spent
    assert server.refreshes == 2 and server.reused == [] and store.breaker("exact:token:test") is None
