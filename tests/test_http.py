"""The HTTP layer against a scripted loopback server: backoff, Retry-After, and no blind POST retries."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from ml_connector import http
from ml_connector.errors import AmbiguousRequestError, RetryableError

FAST = http.RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


class Script:
    """Answers the n-th request with the n-th step: (status, headers) or "drop" (close without answering)."""

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
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
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
    waits = []
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda s: waits.append(s))
    http.send(http.new_session(), "GET", f"{url}/x", vendor="t", retry=FAST)
    assert waits == [pytest.approx(0.2)]


def test_a_retry_after_longer_than_allowed_gives_up_to_airflow(server):
    url, script = server
    script.steps = [(429, {"Retry-After": "3600"}), (200, {})]
    resp = http.send(http.new_session(), "GET", f"{url}/x", vendor="t", retry=FAST)
    assert resp.status_code == 429 and len(script.seen) == 1


def test_full_jitter_waits_stay_within_the_exponential_cap(server, monkeypatch):
    url, script = server
    script.steps = [(503, {})] * 3 + [(200, {})]
    waits = []
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda s: waits.append(s))
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


def test_connection_refused_is_retried_then_reported_as_retryable():
    with pytest.raises(RetryableError, match="ConnectionError after 2 attempts"):
        http.send(http.new_session(), "POST", "http://127.0.0.1:9/ship", vendor="t",
                  retry=http.RetryPolicy(attempts=2, backoff=0.01))


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
