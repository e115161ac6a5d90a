"""The Exact Online webhook router (FastAPI TestClient): a correct HashCode stores the key in the inbox and
answers 200 at once; anything else is refused with 401 and stored nowhere."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ml_connector.erp.exact_online.webhook import hash_code, make_router
from ml_connector_sandbox.exact_online import WEBHOOK_SECRET
from ml_connector_sandbox.exact_online.webhooks import notification

KEY = "0f0e0d0c-0000-4000-8000-000000000001"


@pytest.fixture
def client(sqlite_ledger):
    app = FastAPI()
    app.include_router(make_router(secret=lambda: WEBHOOK_SECRET, ledger=lambda: sqlite_ledger),
                       prefix="/ml-connector/webhooks/exact_online")
    return TestClient(app), sqlite_ledger


def post(client, body: bytes):
    return client.post("/ml-connector/webhooks/exact_online", content=body,
                       headers={"Content-Type": "application/json"})


def test_a_signed_notification_is_stored_once(client):
    http, ledger = client
    body = notification(KEY, secret=WEBHOOK_SECRET, base="https://start.exactonline.de")
    assert post(http, body).status_code == 200
    assert post(http, body).json() == {"stored": False}  # the same delivery again: dropped
    pending = ledger.inbox_pending("exact_online")
    assert len(pending) == 1 and json.loads(pending[0]["payload"])["key"] == KEY


@pytest.mark.parametrize("tamper", ["wrong secret", "changed content", "no hash", "lower-case other hash", "junk"])
def test_anything_but_the_right_hashcode_is_refused_and_stored_nowhere(client, tamper):
    http, ledger = client
    body = notification(KEY, secret=WEBHOOK_SECRET, base="https://start.exactonline.de")
    if tamper == "wrong secret":
        body = notification(KEY, secret="another-secret", base="https://start.exactonline.de")
    elif tamper == "changed content":
        body = body.replace(KEY.encode(), b"11111111-0000-4000-8000-000000000001")
    elif tamper == "no hash":
        body = body.split(b',"HashCode"')[0] + b"}"
    elif tamper == "lower-case other hash":
        body = body[:-3] + b'0"}'
    else:
        body = b"not json"
    response = post(http, body)
    assert response.status_code == 401
    assert ledger.inbox_pending("exact_online") == []


def test_the_hash_is_over_the_raw_content_text():
    content = '{"Topic":"GoodsDeliveries","Key":"k"}'
    assert hash_code(content, "s") == hash_code(content.encode(), "s")
    assert hash_code(content, "s").isupper() and len(hash_code(content, "s")) == 64


def test_the_sandbox_sender_reaches_a_loopback_receiver(exact, sqlite_ledger):
    """The sandbox's webhook sender posts a signed notification to a real loopback server running the router."""
    import socket
    import threading

    import uvicorn

    app = FastAPI()
    app.include_router(make_router(secret=lambda: WEBHOOK_SECRET, ledger=lambda: sqlite_ledger), prefix="/hook")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        sent = exact.control("exact_online", "POST", "exact_online/webhook",
                             {"url": f"http://127.0.0.1:{port}/hook", "number": 5001})
        assert sent["status"] == 200
        refused = exact.control("exact_online", "POST", "exact_online/webhook",
                                {"url": f"http://127.0.0.1:{port}/hook", "number": 5002, "secret": "wrong"})
        assert refused["status"] == 401
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert [json.loads(r["payload"])["topic"] for r in sqlite_ledger.inbox_pending("exact_online")] == \
        ["GoodsDeliveries"]


def test_the_next_extract_fetches_the_announced_delivery_by_its_key(exact, sqlite_ledger):
    """A webhook stored only a key: extract_orders fetches that goods delivery even outside its window."""
    from datetime import UTC, datetime, timedelta

    from ml_connector.erp.exact_online.hook import ExactOnlineHook
    from ml_connector.erp.exact_online.source import ExactOnlineSource
    from ml_connector.settings import load_settings

    entry = {d["number"]: d for d in exact.control("exact_online", "GET", "exact_online/deliveries")}["5001"]
    body = notification(entry["entry_id"], secret=WEBHOOK_SECRET, base=exact.url("exact_online"))
    app = FastAPI()
    app.include_router(make_router(secret=lambda: WEBHOOK_SECRET, ledger=lambda: sqlite_ledger), prefix="/hook")
    assert TestClient(app).post("/hook", content=body).status_code == 200
    source = ExactOnlineSource(load_settings("exact_online_ups"), hook=ExactOnlineHook(ledger=sqlite_ledger))
    long_ago = datetime.now(UTC) - timedelta(days=30)
    found = list(source.extract(long_ago, long_ago + timedelta(minutes=15)))  # an empty window
    assert [o.number for o in found] == ["5001"]
    assert sqlite_ledger.inbox_pending("exact_online") == []
    assert list(source.extract(long_ago, long_ago + timedelta(minutes=15))) == []  # taken once
