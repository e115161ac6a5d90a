"""Business Central webhook subscriptions for the ShipStation pipeline: created with the validationToken handshake
answered by the plugin route (served on loopback), renewed with If-Match before the 3-day expiry, notifications
answered 200 at once and filtered by clientState; and the Business Central calls the pipeline adds."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ml_connector.erp.business_central import webhook as bc_webhook
from ml_connector.erp.business_central.hook import BusinessCentralHook
from ml_connector_sandbox.server import bind_socket


class LoopbackApp:
    """Serve a FastAPI app on a free loopback port in a thread (stopped on exit)."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)

    def __enter__(self) -> LoopbackApp:
        self.thread.start()
        while not self.server.started:
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def plugin(sqlite_ledger):
    app = FastAPI()
    app.include_router(bc_webhook.make_router(client_state=lambda: "state-123", ledger=lambda: sqlite_ledger),
                       prefix="/ml-connector/webhooks/business_central")
    return app


def test_subscription_is_created_with_the_handshake_and_renewed(ss, plugin, sqlite_ledger):
    hook = BusinessCentralHook(ledger=sqlite_ledger)
    with LoopbackApp(plugin) as served:
        url = f"{served.url}/ml-connector/webhooks/business_central"
        created = hook.create_subscription(url, "items", client_state="state-123")
        assert created["resource"].endswith("/items") and created["notificationUrl"] == url
        expires = datetime.fromisoformat(created["expirationDateTime"].replace("Z", "+00:00"))
        assert timedelta(days=2, hours=23) < expires - datetime.now(UTC) <= timedelta(days=3)
        [listed] = hook.list_subscriptions()
        renewed = hook.renew_subscription(listed)
        assert renewed["@odata.etag"] != listed["@odata.etag"]
    assert ss.counters("business_central")["subscription_handshakes"] == 2


def test_a_url_that_does_not_answer_the_handshake_gets_no_subscription(ss, sqlite_ledger):
    app = FastAPI()

    @app.post("/nope")
    def nope() -> dict:
        return {"ok": True}

    hook = BusinessCentralHook(ledger=sqlite_ledger)
    with LoopbackApp(app) as served, pytest.raises(Exception, match="could not be validated"):
        hook.create_subscription(f"{served.url}/nope", "items")
    assert hook.list_subscriptions() == []


def test_notifications_are_answered_200_and_filtered_by_client_state(plugin, sqlite_ledger):
    client = TestClient(plugin)
    entry = {"subscriptionId": "s1", "clientState": "state-123", "resource": "api/v2.0/companies(x)/items(y)",
             "changeType": "updated", "lastModifiedDateTime": "2026-11-29T10:00:00Z"}
    base = "/ml-connector/webhooks/business_central"
    assert client.post(base, json={"value": [entry]}).json() == {"stored": 1}
    assert client.post(base, json={"value": [entry]}).json() == {"stored": 0}  # a retry: stored once
    answer = client.post(base, json={"value": [{**entry, "clientState": "forged"}]})
    assert answer.status_code == 200 and answer.json() == {"stored": 0}
    assert client.post(base, content=b"not json").status_code == 200  # never an answer that deletes it
    assert len(sqlite_ledger.inbox_pending(bc_webhook.SOURCE)) == 1


def test_item_notifications_are_pushed_whatever_their_modification_time_then_marked_done(ss, plugin, sqlite_ledger):
    from ml_connector.fulfilment.shipstation.hook import ShipStationHook
    from ml_connector.fulfilment.shipstation.sync import ShipStationSync

    bc = BusinessCentralHook(ledger=sqlite_ledger)
    item = bc.find_by_number("items", "1900-S")  # last modified 60 days ago: outside any run's window
    client = TestClient(plugin)
    base = "/ml-connector/webhooks/business_central"
    company = f"api/v2.0/companies({bc.company_id})"
    notes = [{"subscriptionId": "s1", "clientState": "state-123", "resource": f"{company}/items({item['id']})",
              "changeType": "updated", "lastModifiedDateTime": "2026-11-29T10:00:00Z"},
             {"subscriptionId": "s1", "clientState": "state-123", "resource": f"{company}/items(deadbeef)",
              "changeType": "deleted", "lastModifiedDateTime": "2026-11-29T10:01:00Z"}]
    assert client.post(base, json={"value": notes}).json() == {"stored": 2}
    sync = ShipStationSync("business_central_shipstation", shipstation=ShipStationHook(ledger=sqlite_ledger), erp=bc,
                           ledger=sqlite_ledger)
    end = datetime.now(UTC)
    outcome = sync.push_items(end - timedelta(minutes=15), end)
    assert outcome.done == ["1900-S"]
    product = next(p for p in ss.control("shipstation", "GET", "shipstation/products") if p["sku"] == "1900-S")
    assert product["defaultCost"] == item["unitCost"] and product["name"] == item["displayName"]
    assert sqlite_ledger.inbox_pending(bc_webhook.SOURCE) == []
    assert sync.push_items(end - timedelta(minutes=15), end).done == []  # consumed: not pushed again
