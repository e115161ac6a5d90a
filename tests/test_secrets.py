"""Encrypted secret store: encryption at rest, key rotation, and one refresh across many processes.

The refresh protocol is checked from the outside: one token request for many processes, no database
transaction held open while the token endpoint is slow, a crashed holder's lease taken over, a failed refresh
releasing its lease.
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

from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger, schema
from ml_connector.models import Address, Order, Package
from ml_connector.secrets import SecretStore, load_fernet


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
