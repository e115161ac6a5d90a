"""Encrypted secret store: encryption at rest, key rotation, one refresh across many processes, and the breaker.

The refresh protocol is checked from the outside: one token request for many processes, no database
transaction held open while the token endpoint is slow, a crashed holder's lease taken over, a failed refresh
releasing its lease. The breaker: a refused refresh is recorded once and honoured by every caller and process
until its window has passed (the store's clock is moved forward instead of sleeping).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
import urllib.request
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet
from tests.hooks.clock import MovableClock

from ml_connector.errors import (
    AmbiguousRequestError,
    AuthenticationError,
    ConfigurationError,
    RetryableApiError,
    RetryableError,
)
from ml_connector.http import TransportError
from ml_connector.ledger import Ledger, schema
from ml_connector.models import Address, Order, Package
from ml_connector.secrets import (
    DEFAULT_REFUSAL_BACKOFF,
    DEFAULT_REFUSAL_BACKOFF_MAX,
    SecretStore,
    TokenRequestsRefused,
    load_fernet,
    refused,
)


def test_values_are_encrypted_at_rest(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("ups:token", "very-secret-token", expires_at=time.time() + 60)
    with ledger.read() as conn:
        stored = conn.execute(sa.select(schema.secrets.c.ciphertext)).scalar_one()
    assert "very-secret-token" not in stored
    assert store.get("ups:token").value == "very-secret-token"


def test_missing_key_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv("ML_CONNECTOR_FERNET_KEYS", raising=False)
    with pytest.raises(ConfigurationError, match="ML_CONNECTOR_FERNET_KEYS is not set"):
        load_fernet()
    with pytest.raises(ConfigurationError, match="not a Fernet key"):
        load_fernet("not-a-key")


def test_rotation_reencrypts_with_the_first_key(ledger: Ledger):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    SecretStore(ledger, load_fernet(old)).put("exact:refresh", "r1")
    rotated = SecretStore(ledger, load_fernet(f"{new},{old}"))
    assert rotated.rotate() == 1
    only_new = SecretStore(ledger, MultiFernet([Fernet(new.encode())]))
    assert only_new.get("exact:refresh").value == "r1"
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        SecretStore(ledger, load_fernet(old)).get("exact:refresh")


def test_delete_removes_the_row(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "v")
    store.delete("k")
    assert store.get("k") is None


def test_fresh_value_is_served_from_cache(ledger: Ledger):
    store = SecretStore(ledger)
    calls = []

    def refresh(current):
        calls.append(current)
        return f"token-{len(calls)}", time.time() + 3600

    assert store.get_or_refresh("k", refresh) == "token-1"
    assert store.get_or_refresh("k", refresh) == "token-1"
    assert len(calls) == 1


def test_value_is_refreshed_inside_the_margin(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "old", expires_at=time.time() + 120)  # expires in 2 min, margin is 5 min
    assert store.get_or_refresh("k", lambda cur: ("new", time.time() + 3600)) == "new"


def test_forced_refresh_reuses_a_value_another_worker_already_replaced(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "replaced-by-other-worker", expires_at=time.time() + 3600)
    value = store.get_or_refresh("k", lambda cur: pytest.fail("must not refresh"), force=True,
                                 stale_value="rejected-token")
    assert value == "replaced-by-other-worker"
    assert store.get_or_refresh("k", lambda cur: ("fresh", time.time() + 3600), force=True,
                                stale_value="replaced-by-other-worker") == "fresh"


def test_forced_refresh_without_the_rejected_value_always_refreshes(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "looks-fresh", expires_at=time.time() + 3600)
    assert store.get_or_refresh("k", lambda cur: ("forced", time.time() + 3600), force=True) == "forced"


def test_refresh_receives_the_previous_value_for_rotating_tokens(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("exact:refresh", "refresh-1", expires_at=time.time() - 1)
    seen = []
    store.get_or_refresh("exact:refresh", lambda cur: (seen.append(cur.value) or "refresh-2", None))
    assert seen == ["refresh-1"] and store.get("exact:refresh").value == "refresh-2"


def test_refresh_may_store_another_secret(ledger: Ledger):
    """A rotating refresh token is stored by the refresh itself, before the access token is handed out."""
    store = SecretStore(ledger)

    def refresh(_current):
        store.put("exact:refresh", "refresh-2")
        return "access-2", time.time() + 3600

    assert store.get_or_refresh("exact:access", refresh) == "access-2"
    assert store.get("exact:refresh").value == "refresh-2"


def _lease(ledger: Ledger, name: str):
    with ledger.read() as conn:
        return conn.execute(sa.select(schema.secrets.c.lease_owner, schema.secrets.c.lease_expires_at)
                            .where(schema.secrets.c.name == name)).one()


def _set_lease(ledger: Ledger, name: str, owner: str | None, expires_at: float | None) -> None:
    with ledger.write() as conn:
        conn.execute(schema.secrets.update().where(schema.secrets.c.name == name)
                     .values(lease_owner=owner, lease_expires_at=expires_at))


def test_a_failed_refresh_releases_the_lease(ledger: Ledger):
    store = SecretStore(ledger)

    def broken(_current):
        raise RuntimeError("token endpoint down")

    with pytest.raises(RuntimeError, match="token endpoint down"):
        store.get_or_refresh("k", broken)
    assert tuple(_lease(ledger, "k")) == (None, None)
    assert store.get_or_refresh("k", lambda cur: ("after", time.time() + 3600)) == "after"


def test_the_lease_of_a_crashed_holder_is_taken_over_when_it_expires(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "stale", expires_at=time.time() - 1)
    expires = time.time() + 0.5
    _set_lease(ledger, "k", "crashed-worker", expires)
    called_at = []

    def refresh(current):
        called_at.append(time.time())
        assert current.value == "stale"
        return "new", time.time() + 3600

    assert store.get_or_refresh("k", refresh) == "new"
    assert len(called_at) == 1 and called_at[0] >= expires  # waited for the lease, then took it over
    assert tuple(_lease(ledger, "k")) == (None, None)


def test_a_waiter_returns_the_value_the_lease_holder_stored(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "stale", expires_at=time.time() - 1)
    _set_lease(ledger, "k", "other-worker", time.time() + 30)

    def other_worker_finishes():
        time.sleep(0.3)
        store.put("k", "from-other-worker", expires_at=time.time() + 3600)
        _set_lease(ledger, "k", None, None)

    helper = threading.Thread(target=other_worker_finishes)
    helper.start()
    try:
        assert store.get_or_refresh("k", lambda cur: pytest.fail("must not refresh")) == "from-other-worker"
    finally:
        helper.join()


def _refresh_in_process(url: str, barrier, counter) -> None:
    store = SecretStore(Ledger(url))
    barrier.wait()

    def refresh(_current):
        with counter.get_lock():
            counter.value += 1
        time.sleep(0.2)  # a slow token endpoint widens the race window
        return "shared-token", time.time() + 3600

    assert store.get_or_refresh("ups:token", refresh) == "shared-token"


@pytest.mark.xdist_group("many_processes")  # together they would pass PostgreSQL's 100 connections
def test_many_processes_refresh_once(ledger: Ledger, ledger_url: str):
    ctx = mp.get_context("fork")
    # 20, not 50: the UPS hook's 50-process token test may run at the same time on the other xdist worker,
    # and two 50-process tests on PostgreSQL at once would pass its max_connections (100)
    n = 20
    barrier, counter = ctx.Barrier(n), ctx.Value("i", 0)
    procs = [ctx.Process(target=_refresh_in_process, args=(ledger_url, barrier, counter)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n
    assert counter.value == 1


# -- no transaction is open while the token endpoint is slow --------------------------------------------------

HOLD_SECONDS = 5.0


class _SlowTokenEndpoint:
    """A loopback token endpoint that holds each request until ``release`` is set, at most HOLD_SECONDS.

    ``answered_after_release`` tells whether the request was let go by ``release`` (rather than by the time
    limit) — i.e. whether whatever sets ``release`` happened while the token request was still in flight.
    """

    def __init__(self, ctx) -> None:
        self.requested, self.release = ctx.Event(), ctx.Event()
        self.answered_after_release = ctx.Value("i", -1)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.requested.set()
                endpoint.answered_after_release.value = int(endpoint.release.wait(HOLD_SECONDS))
                body = json.dumps({"access_token": "slow-token", "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _refresh_through_the_slow_endpoint(url: str, token_url: str, writer_ready, times) -> None:
    store = SecretStore(Ledger(url))
    assert writer_ready.wait(HOLD_SECONDS * 4)

    def refresh(_current):
        request = urllib.request.Request(token_url, data=b"grant_type=client_credentials", method="POST")
        with urllib.request.urlopen(request, timeout=HOLD_SECONDS * 4) as response:
            body = json.load(response)
        times.put(("refresh_returned", time.monotonic()))
        return body["access_token"], time.time() + body["expires_in"]

    assert store.get_or_refresh("slow:token", refresh) == "slow-token"


def _commit_while_the_token_is_requested(url: str, writer_ready, endpoint_requested, endpoint_release,
                                         times) -> None:
    ledger = Ledger(url)
    writer_ready.set()
    assert endpoint_requested.wait(HOLD_SECONDS * 4), "the token request never reached the endpoint"
    order = Order(erp="erp", erp_id="doc-1", number="SO-1", ship_method="GROUND",
                  ship_to=Address(name="Receiver", lines=["1 Main St"], city="New York", state="NY",
                                  postal_code="10001", country="US"),
                  packages=[Package(weight=Decimal("1"))], modified_at=datetime.fromisoformat("2026-01-01T00:00Z"))
    started = time.monotonic()
    ledger.register_order("p", order)
    done = time.monotonic()
    times.put(("commit_started", started))
    times.put(("commit_done", done))
    endpoint_release.set()


def test_a_slow_token_request_does_not_hold_up_other_writers(ledger: Ledger, ledger_url: str):
    """While one process waits for the token endpoint, another one commits a shipment.

    The endpoint holds the token request until that commit is done (at most HOLD_SECONDS): the commit must
    finish while the token request is still in flight, so no database lock may be held around it.
    """
    ctx = mp.get_context("fork")
    times, writer_ready = ctx.Queue(), ctx.Event()
    with _SlowTokenEndpoint(ctx) as endpoint:
        refresher = ctx.Process(target=_refresh_through_the_slow_endpoint,
                                args=(ledger_url, endpoint.url, writer_ready, times))
        writer = ctx.Process(target=_commit_while_the_token_is_requested,
                             args=(ledger_url, writer_ready, endpoint.requested, endpoint.release, times))
        refresher.start()
        writer.start()
        writer.join(timeout=120)
        refresher.join(timeout=120)
    assert (refresher.exitcode, writer.exitcode) == (0, 0)
    events = dict(times.get(timeout=5) for _ in range(3))
    commit_seconds = events["commit_done"] - events["commit_started"]
    print(f"commit while the token request was held: {commit_seconds * 1000:.1f} ms")
    assert endpoint.answered_after_release.value == 1, (
        f"the shipment commit took {commit_seconds:.2f} s: it waited for the token request to finish")
    assert events["commit_done"] < events["refresh_returned"]
    assert ledger.find("p", "doc-1") is not None


# -- the breaker: a refused refresh is shared, not repeated --------------------------------------------------


class Issuer:
    """A refresh function that counts its calls and answers from a script: "429", "503", "401" or "ok"."""

    def __init__(self, clock, answer: str = "429", *, secret: str = "s3cr3t-client-secret",
                 retry_after: float | None = None, reason: str | None = None) -> None:
        self.clock, self.answer, self.secret = clock, answer, secret
        self.retry_after, self.reason = retry_after, reason
        self.calls = 0

    def __call__(self, _current):
        self.calls += 1
        if self.answer == "ok":
            return f"token-{self.calls}", self.clock() + 3600
        if self.answer == "401":
            raise AuthenticationError(f"issuer refused client secret {self.secret}", vendor="test", status=401)
        status = int(self.answer)
        # a vendor message that echoes the request: the breaker must never copy it
        error = RetryableApiError(f"busy; you sent {self.secret}", vendor="test", status=status)
        if self.retry_after is not None or self.reason is not None:
            raise refused(error, reason=self.reason, retry_after=self.retry_after)
        raise error


def _refused_row(ledger: Ledger, name: str):
    with ledger.read() as conn:
        return conn.execute(sa.select(schema.secrets.c.refused_until, schema.secrets.c.refused_reason,
                                      schema.secrets.c.lease_owner)
                            .where(schema.secrets.c.name == name)).one()


def test_a_refused_refresh_is_not_repeated_by_the_next_caller(ledger: Ledger):
    clock = MovableClock()
    store, issuer = SecretStore(ledger, clock=clock), Issuer(clock)
    with pytest.raises(RetryableApiError):  # the caller that asked sees the issuer's own answer
        store.get_or_refresh("ups:token", issuer, label="UPS")
    for _ in range(5):  # every other caller: at once, no request
        with pytest.raises(TokenRequestsRefused) as caught:
            SecretStore(ledger, clock=clock).get_or_refresh("ups:token", issuer, label="UPS")
    assert issuer.calls == 1
    until, reason, lease_owner = _refused_row(ledger, "ups:token")
    assert until == pytest.approx(clock() + DEFAULT_REFUSAL_BACKOFF, abs=2)
    assert reason == "rate limited"
    assert lease_owner is None  # recorded and the lease given back in one go
    assert isinstance(caught.value, RetryableError) and caught.value.retryable
    shown = time.strftime("%H:%M:%S", time.gmtime(until))
    assert str(caught.value) == (f"UPS token requests are refused until {shown} UTC (rate limited): "
                                 "waiting, not asking again")


def test_the_window_doubles_per_consecutive_refusal_up_to_the_cap(ledger: Ledger):
    clock = MovableClock()
    store, issuer = SecretStore(ledger, clock=clock), Issuer(clock, "503")
    windows = []
    for _ in range(7):
        with pytest.raises(RetryableApiError):
            store.get_or_refresh("k", issuer)
        breaker = store.breaker("k")
        windows.append(round(breaker.until - clock()))
        with pytest.raises(TokenRequestsRefused):  # one second before the window ends: still closed to asking
            clock.advance(breaker.until - clock() - 1)
            store.get_or_refresh("k", issuer)
        clock.advance(1)
    assert windows == [60, 120, 240, 480, 900, 900, 900]
    assert DEFAULT_REFUSAL_BACKOFF_MAX == 900
    assert issuer.calls == 7  # one probe per window
    assert store.breaker("k").reason == "HTTP 503" and store.breaker("k").refusals == 7
    assert _refused_row(ledger, "k").refused_reason == "HTTP 503; refused 7 times in a row"


def test_the_issuers_retry_after_sets_the_window(ledger: Ledger):
    clock = MovableClock()
    store = SecretStore(ledger, clock=clock)
    with pytest.raises(RetryableApiError):
        store.get_or_refresh("k", Issuer(clock, "429", retry_after=1800, reason="quota"), label="Entra")
    breaker = store.breaker("k")
    assert breaker.until == pytest.approx(clock() + 1800, abs=2) and breaker.reason == "quota"
    with pytest.raises(TokenRequestsRefused, match=r"^Entra token requests are refused until .* UTC \(quota\)"):
        store.get_or_refresh("k", Issuer(clock, "ok"), label="Entra")


def test_a_success_after_the_window_closes_the_breaker(ledger: Ledger):
    clock = MovableClock()
    store = SecretStore(ledger, clock=clock)
    for _ in range(3):  # three refusals in a row: the window is 240 s now
        with pytest.raises(RetryableApiError):
            store.get_or_refresh("k", Issuer(clock, "429"))
        clock.advance(store.breaker("k").until - clock())
    issuer = Issuer(clock, "ok")
    assert store.get_or_refresh("k", issuer) == "token-1"
    assert store.breaker("k") is None and tuple(_refused_row(ledger, "k")) == (None, None, None)
    assert store.get_or_refresh("k", issuer) == "token-1"  # served from the cache
    clock.advance(3600)  # the next lifetime: one request
    assert store.get_or_refresh("k", issuer) == "token-2" and issuer.calls == 2
    with pytest.raises(RetryableApiError):  # a new refusal starts from the first window again
        clock.advance(3600)
        store.get_or_refresh("k", Issuer(clock, "429"))
    assert round(store.breaker("k").until - clock()) == DEFAULT_REFUSAL_BACKOFF


def test_a_credential_refusal_opens_no_breaker_and_is_not_retried(ledger: Ledger):
    clock = MovableClock()
    store, issuer = SecretStore(ledger, clock=clock), Issuer(clock, "401")
    for attempt in range(1, 4):
        with pytest.raises(AuthenticationError):
            store.get_or_refresh("k", issuer)
        assert issuer.calls == attempt  # one request per call: no loop, no retry
    assert store.breaker("k") is None and _refused_row(ledger, "k").lease_owner is None
    issuer.answer = "ok"  # the secret is fixed: the very next call works, nothing to wait out
    assert store.get_or_refresh("k", issuer) == "token-4"


@pytest.mark.parametrize("error, reason", [
    (RetryableApiError("throttled", vendor="t", status=429), "rate limited"),
    (RetryableApiError("bad gateway", vendor="t", status=502), "HTTP 502"),
    (TransportError("t POST /token: connection refused after 3 attempts", reason="connection refused"),
     "connection refused"),
    (AmbiguousRequestError("t POST /token: no answer (read timeout)"), "no answer"),
])
def test_every_retryable_refusal_opens_the_breaker_with_a_short_reason(ledger: Ledger, error, reason):
    store = SecretStore(ledger)

    def refresh(_current):
        raise error

    with pytest.raises(type(error)):
        store.get_or_refresh("k", refresh)
    assert store.breaker("k").reason == reason
    with pytest.raises(TokenRequestsRefused, match=f"\\({reason}\\)"):
        store.get_or_refresh("k", lambda _c: pytest.fail("must not ask while the breaker is open"))


def test_no_secret_reaches_the_breaker_or_its_messages(ledger: Ledger):
    clock = MovableClock()
    secret = "s3cr3t-client-secret"
    store = SecretStore(ledger, clock=clock)
    with pytest.raises(RetryableApiError):
        store.get_or_refresh("k", Issuer(clock, "429", secret=secret))
    with pytest.raises(TokenRequestsRefused) as caught:
        store.get_or_refresh("k", Issuer(clock, "ok"))
    row = _refused_row(ledger, "k")
    assert secret not in row.refused_reason and secret not in str(caught.value) and secret not in repr(caught.value)
    long = "x" * 500
    with pytest.raises(RetryableApiError):  # a reason is short whatever a caller passes
        clock.advance(3600)
        store.get_or_refresh("k", Issuer(clock, "429", reason=long))
    assert len(store.breaker("k").reason) <= 80


def test_a_stale_but_unexpired_value_is_used_while_refused(ledger: Ledger):
    clock = MovableClock()
    store = SecretStore(ledger, clock=clock)
    store.put("k", "still-valid", expires_at=clock() + 30)  # inside the 5-minute margin: stale, not expired
    issuer = Issuer(clock, "429")
    assert store.get_or_refresh("k", issuer) == "still-valid"  # the refresh was refused: keep the old one
    assert store.get_or_refresh("k", issuer) == "still-valid"  # the breaker is open: nobody asks
    assert issuer.calls == 1 and store.breaker("k") is not None
    with pytest.raises(TokenRequestsRefused):  # refused by the server (401) while the breaker is open
        store.get_or_refresh("k", issuer, force=True, stale_value="still-valid")
    clock.advance(31)  # expired, the 60 s window not over: nothing to hand out
    with pytest.raises(TokenRequestsRefused):
        store.get_or_refresh("k", issuer)
    assert issuer.calls == 1


def test_lease_waiters_do_not_ask_again_after_the_holder_was_refused(ledger: Ledger):
    """Threads that wait for the lease while the holder's request is refused take the refusal, not a turn."""
    store, calls, outcomes = SecretStore(ledger), [], []
    barrier = threading.Barrier(8)

    def refresh(_current):
        calls.append(1)
        time.sleep(0.3)  # the waiters are polling the lease meanwhile
        raise RetryableApiError("quota", vendor="t", status=429)

    def lane():
        barrier.wait()
        try:
            store.get_or_refresh("k", refresh)
        except RetryableError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=lane) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1
    assert sorted(outcomes) == ["RetryableApiError"] + ["TokenRequestsRefused"] * 7


def _refused_in_process(url: str, barrier, counter, outcomes) -> None:
    store = SecretStore(Ledger(url))
    barrier.wait()

    def refresh(_current):
        with counter.get_lock():
            counter.value += 1
        time.sleep(0.2)  # a slow refusal widens the race window
        raise RetryableApiError("too many requests", vendor="t", status=429)

    try:
        store.get_or_refresh("ups:token", refresh, label="UPS")
    except RetryableError as exc:
        outcomes.put(type(exc).__name__)
    else:
        outcomes.put("got a token")


@pytest.mark.xdist_group("many_processes")  # together they would pass PostgreSQL's 100 connections
def test_processes_share_one_refusal(ledger: Ledger, ledger_url: str):
    ctx = mp.get_context("fork")
    n = 8
    barrier, counter, outcomes = ctx.Barrier(n), ctx.Value("i", 0), ctx.Queue()
    procs = [ctx.Process(target=_refused_in_process, args=(ledger_url, barrier, counter, outcomes))
             for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n
    assert counter.value == 1
    assert sorted(outcomes.get(timeout=5) for _ in range(n)) == ["RetryableApiError"] + ["TokenRequestsRefused"] * 7
