"""Full runs of the business_central_shipstation DAG with dag.test() against the ShipStation and Business Central
sandboxes: items by SKU (missing SKUs reported), shipped orders booked once as posted invoices with tracking (read
back from the sandbox), three webhook deliveries plus the poll making one document, an edited open order updating
its document, and a webhook with a wrong token refused and stored nowhere."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.conftest import ROOT
from tests.dags.conftest import interval_end, load_dag, run_interval, states
from tests.fulfilment.shipstation.conftest import WEBHOOK_TOKEN, bc_connection, shipstation_connection

from ml_connector.fulfilment.shipstation import webhook
from ml_connector.ledger import Ledger, fulfilment

PIPELINE = "business_central_shipstation"
pytestmark = pytest.mark.xdist_group("airflow_metadata_db")


@pytest.fixture(scope="module")
def ss_bc_sandbox():
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["shipstation", "business_central"]) as server:
        yield server


@pytest.fixture
def env(ss_bc_sandbox, airflow_db, tmp_path, monkeypatch):
    sandbox = ss_bc_sandbox
    sandbox.reset("shipstation")
    sandbox.reset("business_central")
    monkeypatch.setenv("AIRFLOW_CONN_SHIPSTATION_DEFAULT", shipstation_connection(sandbox.url("shipstation")))
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", bc_connection(sandbox.url("business_central")))
    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    settings = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
    settings[PIPELINE].update(retries=1, retry_delay_seconds=1, max_retry_delay_seconds=1)
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("ML_CONNECTOR_PIPELINES", str(path))
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    app = FastAPI()
    app.include_router(webhook.make_router(token=lambda: WEBHOOK_TOKEN, ledger=lambda: ledger),
                       prefix="/ml-connector/webhooks/shipstation")
    return {"sandbox": sandbox, "ledger": ledger, "route": TestClient(app)}


def invoices(sandbox) -> dict[str, dict]:
    answer = requests.get(f"{sandbox.url('business_central')}/_sandbox/business_central/invoices", timeout=10)
    return {i["externalDocumentNumber"]: i for i in answer.json()}


def order(number: str, key: str, quantity: int = 1, **more) -> dict:
    return {"orderNumber": number, "orderKey": key, "orderStatus": "awaiting_shipment", "customerUsername": "20000",
            "orderDate": "2026-11-28T09:00:00.0000000",
            "shipTo": {"name": "Fabrikam", "street1": "5 Pine St", "city": "Portland", "state": "OR",
                       "postalCode": "97201", "country": "US"},
            "items": [{"sku": "1900-S", "quantity": quantity, "unitPrice": 192.8}], **more}


def test_dag_integrity():
    dag = load_dag(PIPELINE)
    assert dag.max_active_runs == 1 and dag.catchup is False and dag.doc_md
    assert {t.task_id for t in dag.tasks} == {"push_items", "collect_orders", "book_orders", "renew_subscriptions",
                                              "report"}
    assert dag.get_task("report").trigger_rule == "all_done"


def test_items_out_orders_back_once_and_edits_update_the_document(env):
    sandbox, ledger, route = env["sandbox"], env["ledger"], env["route"]
    end = interval_end(1)
    at = (end - timedelta(minutes=5)).isoformat()
    bc = sandbox.url("business_central")
    requests.post(f"{bc}/_sandbox/business_central/items/touch", json={"numbers": ["1900-S", "1968-S"],
                                                                         "modified_at": at}, timeout=10)
    shipped = sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SS-1", "key-ship", 2),
                                                                              "_modified_at": at})
    ship = sandbox.control("shipstation", "POST", f"shipstation/orders/{shipped['order']['orderId']}/ship",
                           {"_modified_at": at, "carrierCode": "fedex", "serviceCode": "fedex_ground"})
    for _ in range(3):  # the same SHIP_NOTIFY three times, plus the poll of the interval
        assert route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}",
                          json=ship["webhooks"][0]).status_code == 200
    assert route.post("/ml-connector/webhooks/shipstation/not-the-token", json=ship["webhooks"][0]).status_code == 404
    sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SS-2", "key-open", 1), "_modified_at": at})
    sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SS-3", "key-stranger", 1),
                                                                  "customerUsername": "77777", "_modified_at": at})

    dag = load_dag(PIPELINE)
    dr = run_interval(dag, end)
    assert states(dr)[("book_orders", "-1")] == "success"
    assert states(dr)[("report", "-1")] == "failed"  # the unknown customer is a record error: the run is red

    # items: 1900-S updated whole in ShipStation, 1968-S missing and reported
    product = next(p for p in sandbox.control("shipstation", "GET", "shipstation/products") if p["sku"] == "1900-S")
    assert product["defaultCost"] and product["warehouseLocation"] == "A-1"
    items = {r["record_key"]: r["state"] for r in fulfilment.rows(ledger, PIPELINE, "item")}
    assert items == {"1900-S": "pushed", "1968-S": "missing_sku"}

    # orders: one posted invoice with tracking for the shipped order, a draft for the open one, an error named
    docs = invoices(sandbox)
    assert set(docs) == {"key-ship", "key-open"}
    assert docs["key-ship"]["status"] == "Open"
    tracking = ship["shipment"]["trackingNumber"]
    assert f"Tracking {tracking} carrier fedex service fedex_ground" in [x["description"] for x in docs["key-ship"]["lines"]]
    assert docs["key-open"]["status"] == "Draft" and docs["key-open"]["lines"][0]["quantity"] == 1
    error = fulfilment.get(ledger, PIPELINE, "order", "key-stranger")
    assert error["state"] == "error" and "customer '77777' is not in Business Central" in error["detail"]
    assert ledger.inbox_pending(webhook.SOURCE) == []

    # next interval: the open order was edited in ShipStation (no webhook); the poll finds it, the draft follows
    end2 = end + timedelta(minutes=15)
    at2 = (end2 - timedelta(minutes=5)).isoformat()
    sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SS-2", "key-open", 4), "_modified_at": at2})
    sandbox.control("shipstation", "POST", "shipstation/touch", {"modified_at": at2,
                                                                  "orderIds": [shipped["order"]["orderId"]]})
    run_interval(dag, end2)
    docs = invoices(sandbox)
    assert set(docs) == {"key-ship", "key-open"}
    assert docs["key-open"]["lines"][0]["quantity"] == 4 and docs["key-open"]["status"] == "Draft"
    assert sandbox.counters("business_central")["invoices_posted"] == 1
    assert sandbox.counters("shipstation")["rate_limited"] == 0


def test_a_wrong_shipstation_secret_fails_the_run_and_books_nothing(env, monkeypatch):
    sandbox = env["sandbox"]
    conn = json.loads(shipstation_connection(sandbox.url("shipstation")))
    conn["password"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_SHIPSTATION_DEFAULT", json.dumps(conn))
    end = interval_end(3)
    dr = run_interval(load_dag(PIPELINE), end)
    result = states(dr)
    assert result[("collect_orders", "-1")] == "failed"  # push_items had no item to look up: no call
    assert result[("report", "-1")] == "failed"
    assert invoices(sandbox) == {}
    assert fulfilment.rows(env["ledger"], PIPELINE) == []  # a credential error quarantines nothing
    assert "not-the-secret" not in json.dumps(fulfilment.rows(env["ledger"], PIPELINE))


def test_sales_order_mode_books_once_and_an_edited_open_order_updates_its_document(env, monkeypatch):
    """``document: sales_order``: a shipped order becomes one sales order with the tracking line (three webhooks
    plus the poll), an open order a draft sales order that follows the edit of the next interval."""
    import os

    from ml_connector.erp.business_central.hook import BusinessCentralHook

    sandbox, route = env["sandbox"], env["route"]
    path = os.environ["ML_CONNECTOR_PIPELINES"]
    settings = yaml.safe_load(open(path).read())
    settings[PIPELINE]["document"] = "sales_order"
    with open(path, "w") as handle:
        handle.write(yaml.safe_dump(settings))
    end = interval_end(5)
    at = (end - timedelta(minutes=5)).isoformat()
    shipped = sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SO-1", "so-ship", 2),
                                                                              "_modified_at": at})
    ship = sandbox.control("shipstation", "POST", f"shipstation/orders/{shipped['order']['orderId']}/ship",
                           {"_modified_at": at})
    for _ in range(3):
        route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}", json=ship["webhooks"][0])
    sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SO-2", "so-open", 1), "_modified_at": at})

    dag = load_dag(PIPELINE)
    assert "sales order" in dag.doc_md
    dr = run_interval(dag, end)
    assert states(dr)[("book_orders", "-1")] == "success" and states(dr)[("report", "-1")] == "success"
    bc = BusinessCentralHook(ledger=env["ledger"])
    booked = bc.find_document("salesOrders", "so-ship")
    draft = bc.find_document("salesOrders", "so-open")
    tracking = f"Tracking {ship['shipment']['trackingNumber']} carrier ups service ups_ground"
    assert [x["description"] for x in booked["salesOrderLines"]][-1] == tracking
    assert booked["salesOrderLines"][0]["quantity"] == 2 and booked["shipToCity"] == "Portland"
    assert draft["status"] == "Draft" and [x["quantity"] for x in draft["salesOrderLines"]] == [1]

    end2 = end + timedelta(minutes=15)
    at2 = (end2 - timedelta(minutes=5)).isoformat()
    sandbox.control("shipstation", "POST", "shipstation/orders", {**order("SO-2", "so-open", 3), "_modified_at": at2,
                                                                  "shipTo": {"name": "Fabrikam", "street1": "9 Elm",
                                                                             "city": "Salem", "state": "OR",
                                                                             "postalCode": "97301", "country": "US"}})
    sandbox.control("shipstation", "POST", "shipstation/touch", {"modified_at": at2,
                                                                  "orderIds": [shipped["order"]["orderId"]]})
    run_interval(dag, end2)
    edited = bc.find_document("salesOrders", "so-open")
    assert edited["id"] == draft["id"] and edited["shipToCity"] == "Salem"
    assert [x["quantity"] for x in edited["salesOrderLines"]] == [3]
    counters = sandbox.counters("business_central")
    assert counters["sales_orders_created"] == 2 and counters["sales_orders_patched"] == 1
    assert invoices(sandbox) == {}
