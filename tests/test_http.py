"""The HTTP layer against a scripted loopback server: backoff, Retry-After, and no blind POST retries.

Whether a failed request provably never reached the server is decided on urllib3/requests exception types; the
transport failures here are real ones on loopback sockets (a closed port, a full accept queue, a server that
reads the request and never answers or hangs up).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import urllib3.exceptions

from ml_connector import http
from ml_connector.errors import AmbiguousRequestError, RetryableError

FAST = http.RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


class Script:
    """Answers the n-th request with the n-th step: (status, headers), "drop" (close without answering) or
    ("sleep", seconds) (answer 200 that late)."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.seen = []


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append((self.command, self.path, dict(self.headers), body))
            step = script.steps.pop(0) if script.steps else (200, {})
            if step == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if step[0] == "sleep":
                time.sleep(step[1])
                step = (200, {})
            status, headers = step
            payload = b'{"ok": true}'
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", script
    srv.shutdown()
    srv.server_close()


def test_get_retries_429_and_5xx_then_succeeds(server):
    url, script = server
    script.steps = [(429, {}), (503, {}), (502, {}), (200, {})]
    resp = http.send(http.new_session(), "GET", f"{url}/x", vendor="t", retry=FAST)
    assert resp.status_code == 200 and len(script.seen) == 4


def test_retries_used_up_return_the_last_response(server):
    url, script = server
    script.steps = [(429, {})] * 10
    resp = http.send(http.new_session(), "GET", f"{url}/x", vendor="t", retry=FAST)
    assert resp.status_code == 429 and len(script.seen) == FAST.attempts


def test_retry_after_is_honoured(server, monkeypatch):
    url, script = server
    script.steps = [(429, {"Retry-After": "0.2"}), (200, {})]
    waits = record_sleeps(monkeypatch)
    http.send(http.new_session(), "GET", f"{url}/x", vendor="t", retry=FAST)
    assert waits == [pytest.approx(0.2)]


def test_a_retry_after_longer_than_allowed_gives_up_to_airflow(server):
    url, script = server
    script.steps = [(429, {"Retry-After": "3600"}), (200, {})]
    resp = http.send(http.new_session(), "GET", f"{url}/x", vendor="t", retry=FAST)
    assert resp.status_code == 429 and len(script.seen) == 1


def record_sleeps(monkeypatch) -> list[float]:
    """The waits tenacity asks for in this thread, not slept. tenacity sleeps with ``time.sleep``, which is
    process-wide: other threads (in-process sandboxes) go on sleeping for real."""
    waits, me, real_sleep = [], threading.get_ident(), time.sleep
    monkeypatch.setattr("tenacity.nap.time.sleep",
                        lambda s: waits.append(s) if threading.get_ident() == me else real_sleep(s))
    return waits


def test_full_jitter_waits_stay_within_the_exponential_cap(server, monkeypatch):
    url, script = server
    script.steps = [(503, {})] * 3 + [(200, {})]
    waits = record_sleeps(monkeypatch)
    http.send(http.new_session(), "GET", f"{url}/x", vendor="t",
              retry=http.RetryPolicy(attempts=4, backoff=1.0, max_backoff=60))
    assert len(waits) == 3
    assert all(0 <= w <= 2 ** (i + 1) for i, w in enumerate(waits))


def test_post_is_retried_after_429_because_it_was_not_processed(server):
    url, script = server
    script.steps = [(429, {}), (200, {})]
    resp = http.send(http.new_session(), "POST", f"{url}/ship", vendor="t", retry=FAST, json={"a": 1})
    assert resp.status_code == 200 and len(script.seen) == 2


def test_post_is_never_retried_after_a_dropped_connection(server):
    url, script = server
    script.steps = ["drop", (200, {})]
    with pytest.raises(AmbiguousRequestError, match="may have taken effect"):
        http.send(http.new_session(), "POST", f"{url}/ship", vendor="t", retry=FAST, json={"a": 1})
    assert len(script.seen) == 1


def test_post_is_not_retried_after_a_gateway_timeout(server):
    url, script = server
    script.steps = [(504, {}), (200, {})]
    with pytest.raises(AmbiguousRequestError):
        http.send(http.new_session(), "POST", f"{url}/ship", vendor="t", retry=FAST)
    assert len(script.seen) == 1


def test_idempotent_post_is_retried_after_a_drop(server):
    url, script = server
    script.steps = ["drop", (200, {})]
    resp = http.send(http.new_session(), "POST", f"{url}/token", vendor="t", retry=FAST, idempotent=True)
    assert resp.status_code == 200


class CountingSession(requests.Session):
    """Counts the requests that were attempted (also those that never got a connection)."""

    def __init__(self):
        super().__init__()
        self.attempts = 0

    def request(self, *args, **kwargs):
        self.attempts += 1
        return super().request(*args, **kwargs)


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def full_backlog():
    """A listening port whose accept queue is full: a new connection's SYN is dropped -> connect timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


def test_connection_refused_is_retried_then_reported_as_retryable():
    with pytest.raises(RetryableError, match="connection refused .ConnectionError. after 2 attempts"):
        http.send(http.new_session(), "POST", "http://127.0.0.1:9/ship", vendor="t",
                  retry=http.RetryPolicy(attempts=2, backoff=0.01))


def test_connection_refused_on_a_closed_port_is_retried_even_for_a_post():
    session = CountingSession()
    url = f"http://127.0.0.1:{closed_port()}/ship"
    with pytest.raises(http.TransportError) as err:
        http.send(session, "POST", url, vendor="t", retry=FAST, json={"a": 1})
    assert session.attempts == FAST.attempts
    assert err.value.reason == "connection refused" and err.value.retryable
    assert err.value.origin == url.removesuffix("/ship") and err.value.attempts == FAST.attempts


def test_unresolvable_name_is_retried_even_for_a_post():
    session = CountingSession()
    with pytest.raises(http.TransportError) as err:
        http.send(session, "POST", "http://ml-connector-test.invalid/ship", vendor="t", retry=FAST)
    assert session.attempts == FAST.attempts and err.value.reason == "name not resolved"


def test_connect_timeout_is_retried_even_for_a_post(full_backlog):
    session = CountingSession()
    with pytest.raises(http.TransportError) as err:
        http.send(session, "POST", f"http://127.0.0.1:{full_backlog}/ship", vendor="t",
                  retry=http.RetryPolicy(attempts=2, backoff=0.01), timeout=(0.2, 5))
    assert session.attempts == 2 and err.value.reason == "connect timeout"


def test_read_timeout_after_sending_a_post_is_ambiguous(server):
    url, script = server
    script.steps = [("sleep", 1.0), (200, {})]
    session = CountingSession()
    with pytest.raises(AmbiguousRequestError, match="read timeout") as err:
        http.send(session, "POST", f"{url}/ship", vendor="t", retry=FAST, timeout=(2, 0.2), json={"a": 1})
    assert session.attempts == 1 and len(script.seen) == 1
    assert "may have taken effect" in str(err.value)


def test_read_timeout_of_a_get_is_retried(server):
    url, script = server
    script.steps = [("sleep", 1.0), (200, {})]
    session = CountingSession()
    assert http.send(session, "GET", f"{url}/x", vendor="t", retry=FAST, timeout=(2, 0.2)).status_code == 200
    assert session.attempts == 2


def test_dropped_connection_after_sending_a_post_is_ambiguous(server):
    url, script = server
    script.steps = ["drop", (200, {})]
    session = CountingSession()
    with pytest.raises(AmbiguousRequestError, match="connection dropped"):
        http.send(session, "POST", f"{url}/ship", vendor="t", retry=FAST, data=b"label please")
    assert session.attempts == 1


def _wrapped(reason: Exception) -> requests.ConnectionError:
    """How requests wraps a urllib3 failure: ConnectionError(MaxRetryError(reason=...))."""
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "http://h/x", reason))


@pytest.mark.parametrize(("exc", "never_sent"), [
    (_wrapped(urllib3.exceptions.NewConnectionError(None, "refused")), True),
    (_wrapped(urllib3.exceptions.NameResolutionError("h", None, socket.gaierror("no such host"))), True),
    (_wrapped(urllib3.exceptions.ConnectTimeoutError(None, "connect timed out")), True),
    (requests.ConnectTimeout("connect timed out"), True),
    # the proxy could not be reached: nothing went to the server either
    (requests.exceptions.ProxyError(urllib3.exceptions.MaxRetryError(None, "http://h/x", urllib3.exceptions.ProxyError(
        "Unable to connect to proxy", urllib3.exceptions.NewConnectionError(None, "refused")))), True),
    (_wrapped(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())), False),
    (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")), False),
    (requests.ReadTimeout("read timed out"), False),
    (_wrapped(urllib3.exceptions.ReadTimeoutError(None, "http://h/x", "read timed out")), False),
    # messages that merely mention a connection error prove nothing
    (requests.ConnectionError("NewConnectionError: Connection refused (in a log line)"), False),
])
def test_never_sent_is_decided_on_exception_types(exc, never_sent):
    assert http._never_sent(exc) is never_sent


def test_a_cause_chain_is_followed():
    try:
        try:
            raise urllib3.exceptions.NewConnectionError(None, "refused")
        except urllib3.exceptions.NewConnectionError as inner:
            raise requests.ConnectionError("wrapped") from inner
    except requests.ConnectionError as exc:
        assert http._never_sent(exc) is True


def test_logs_never_show_headers_or_query_strings(server, caplog):
    url, script = server
    caplog.set_level(logging.DEBUG, logger="ml_connector.http")
    http.send(http.new_session(), "GET", f"{url}/x?api_key=s3cr3t", vendor="t",
              headers={"Authorization": "Bearer s3cr3t-token"})
    text = caplog.text
    assert "/x" in text and "s3cr3t" not in text
    assert script.seen[0][2]["Authorization"] == "Bearer s3cr3t-token"


def test_retry_after_parsing():
    resp = requests.Response()
    resp.headers["Retry-After"] = "7"
    assert http.retry_after_seconds(resp) == 7
    resp.headers.clear()
    resp.headers["X-Rate-Limit-Reset"] = "12"
    assert http.retry_after_seconds(resp) == 12
    resp.headers.clear()
    assert http.retry_after_seconds(resp) is None
