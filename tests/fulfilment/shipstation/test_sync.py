"""Items out and orders back against the ShipStation and Business Central sandboxes, without Airflow: products
updated whole by SKU (missing SKUs recorded), one document per orderKey whatever the deliveries, an edit updating
the draft, the posted invoice carrying tracking, unknown customers and SKUs as record errors, and the webhook
route refusing a wrong token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.fulfilment.shipstation.conftest import WEBHOOK_TOKEN

from ml_connector.erp.business_central.hook import BusinessCentralHook
from ml_connector.fulfilment.shipstation import webhook
from ml_connector.fulfilment.shipstation.hook import ShipStationHook
from ml_connector.fulfilment.shipstation.sync import ShipStationSync
from ml_connector.ledger import fulfilment

PIPELINE = "business_central_shipstation"


@pytest.fixture
def sync(ss, sqlite_ledger):
    return ShipStationSync(PIPELINE, shipstation=ShipStationHook(ledger=sqlite_ledger),
                           erp=BusinessCentralHook(ledger=sqlite_ledger), ledger=sqlite_ledger)


@pytest.fixture
def route(sqlite_ledger):
    app = FastAPI()
    app.include_router(webhook.make_router(token=lambda: WEBHOOK_TOKEN, ledger=lambda: sqlite_ledger),
                       prefix="/ml-connector/webhooks/shipstation")
    return TestClient(app)


def window(minutes: int = 15) -> tuple[datetime, datetime]:
    end = datetime.now(UTC) + timedelta(minutes=1)
    return end - timedelta(minutes=minutes), end


def invoices(ss) -> list[dict]:
    return requests.get(f"{ss.url('business_central')}/_sandbox/business_central/invoices", timeout=10).json()


ORDER = {"orderNumber": "SS-1001", "orderKey": "ss-key-1001", "orderStatus": "awaiting_shipment",
         "customerUsername": "10000", "orderDate": "2026-11-29T08:00:00.0000000",
         "shipTo": {"name": "Emily Carter", "street1": "1 Main St", "city": "Seattle", "state": "WA",
                    "postalCode": "98101", "country": "US"},
         "items": [{"sku": "1896-S", "name": "Desk", "quantity": 2, "unitPrice": 900.0}]}


def test_items_go_out_by_sku_and_missing_skus_are_recorded(ss, sync, sqlite_ledger):
    start, end = window()
    requests.post(f"{ss.url('business_central')}/_sandbox/business_central/items/touch",
                  json={"numbers": ["1896-S", "1936-S"]}, timeout=10).raise_for_status()
    outcome = sync.push_items(start, end)
    assert outcome.done == ["1896-S"]
    assert set(outcome.problems) == {"1936-S"} and "not a ShipStation product" in outcome.problems["1936-S"]
    product = next(p for p in ss.control("shipstation", "GET", "shipstation/products") if p["sku"] == "1896-S")
    assert product["name"] == "ATHENS Desk" and product["price"] == 1000.8
    assert product["warehouseLocation"] == "A-1" and product["weightOz"] == 16.0  # the rest survived the PUT
    rows = {r["record_key"]: r for r in fulfilment.rows(sqlite_ledger, PIPELINE, "item")}
    assert rows["1936-S"]["state"] == "missing_sku" and rows["1896-S"]["state"] == "pushed"
    assert sync.push_items(start, end).unchanged == ["1896-S"]  # nothing to PUT the second time
    assert ss.counters("shipstation")["product_puts"] == 1


def test_an_order_is_booked_once_edited_in_place_and_posted_with_tracking(ss, sync, route, sqlite_ledger):
    start, end = window()
    placed = ss.control("shipstation", "POST", "shipstation/orders", dict(ORDER))
    order_id = placed["order"]["orderId"]
    assert route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}", json=placed["webhooks"][0]).status_code == 200
    assert sync.collect(start, end) == [order_id]
    sync.book([order_id])
    [draft] = invoices(ss)
    assert draft["status"] == "Draft" and draft["externalDocumentNumber"] == "ss-key-1001"

    edited = {**ORDER, "items": [{"sku": "1896-S", "quantity": 3, "unitPrice": 900.0}]}
    ss.control("shipstation", "POST", "shipstation/orders", edited)  # the order edited in ShipStation (no webhook)
    sync.book(sync.collect(start, end))
    [draft] = invoices(ss)
    assert [x["quantity"] for x in draft["lines"]] == [3.0]  # the same document, updated

    shipped = ss.control("shipstation", "POST", f"shipstation/orders/{order_id}/ship",
                         {"carrierCode": "ups", "serviceCode": "ups_ground"})
    for _ in range(3):  # three deliveries of the same SHIP_NOTIFY
        answer = route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}", json=shipped["webhooks"][0])
        assert answer.status_code == 200
    ids = sync.collect(start, end)  # the webhook and the poll both name the order
    assert ids == [order_id]
    sync.book(ids + ids)
    [posted] = invoices(ss)
    assert posted["status"] == "Open" and posted["number"].startswith("PS-INV")
    tracking = shipped["shipment"]["trackingNumber"]
    assert [x["description"] for x in posted["lines"] if x["lineType"] == "Comment"] == [
        f"Tracking {tracking} carrier ups service ups_ground"]
    row = fulfilment.get(sqlite_ledger, PIPELINE, "order", "ss-key-1001")
    assert row["state"] == "booked" and row["detail"] == tracking
    sync.book(sync.collect(start, end))  # later runs leave the posted invoice alone
    assert len(invoices(ss)) == 1
    assert ss.counters("business_central")["invoices_posted"] == 1


def test_unknown_customer_and_sku_are_record_errors_and_the_others_go_on(ss, sync, sqlite_ledger):
    start, end = window()
    ss.control("shipstation", "POST", "shipstation/orders", {**ORDER, "orderKey": "k-cust", "orderNumber": "SS-2",
                                                             "customerUsername": "99999"})
    ss.control("shipstation", "POST", "shipstation/orders", {**ORDER, "orderKey": "k-sku", "orderNumber": "SS-3",
                                                             "items": [{"sku": "NOPE-1", "quantity": 1}]})
    ss.control("shipstation", "POST", "shipstation/orders", {**ORDER, "orderKey": "k-good", "orderNumber": "SS-4"})
    outcome = sync.book(sync.collect(start, end))
    assert outcome.done == ["k-good"]
    assert "customer '99999' is not in Business Central" in outcome.problems["k-cust"]
    assert "item 'NOPE-1' is not in Business Central" in outcome.problems["k-sku"]
    assert fulfilment.get(sqlite_ledger, PIPELINE, "order", "k-sku")["state"] == "error"


def test_a_wrong_token_is_refused_and_stored_nowhere(route, sqlite_ledger):
    body = {"resource_url": "https://ssapi.shipstation.com/orders?importBatch=1", "resource_type": "ORDER_NOTIFY"}
    assert route.post("/ml-connector/webhooks/shipstation/wrong-token", json=body).status_code == 404
    assert route.post("/ml-connector/webhooks/shipstation/", json=body).status_code in (404, 405)
    assert sqlite_ledger.inbox_pending(webhook.SOURCE) == []
    assert route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}", json=body).json() == {"stored": True}
    assert route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}", json=body).json() == {"stored": False}


def test_a_resource_url_on_another_host_is_not_followed(ss, sync, route, sqlite_ledger):
    body = {"resource_url": "https://evil.example.com/orders?importBatch=1", "resource_type": "ORDER_NOTIFY"}
    route.post(f"/ml-connector/webhooks/shipstation/{WEBHOOK_TOKEN}", json=body)
    assert sync.collect(*window()) == []
    assert sqlite_ledger.inbox_pending(webhook.SOURCE) == []  # done, with the reason


def test_the_poll_finds_an_order_edited_in_the_repeated_november_hour(ss, sync):
    placed = ss.control("shipstation", "POST", "shipstation/orders", dict(ORDER))
    order_id = placed["order"]["orderId"]
    second_0130 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # 01:30 PST, the second 01:30 of the night
    ss.control("shipstation", "POST", "shipstation/touch", {"modified_at": second_0130.isoformat(),
                                                             "orderIds": [order_id]})
    [stored] = [o for o in ss.control("shipstation", "GET", "shipstation/orders") if o["orderId"] == order_id]
    assert stored["modifyDate"].startswith("2026-11-01T01:30:00")  # no offset, as ShipStation writes it
    # a naive conversion of 08:55-09:40 UTC asks for 01:55 PDT .. 01:40 PST = an empty local window; the widened
    # window finds it:
    assert sync.collect(datetime(2026, 11, 1, 8, 55, tzinfo=UTC), datetime(2026, 11, 1, 9, 40, tzinfo=UTC)) == [order_id]
    # a window well before (first 00:xx PDT) or after (02:xx PST) does not
    assert sync.collect(datetime(2026, 11, 1, 7, 0, tzinfo=UTC), datetime(2026, 11, 1, 7, 45, tzinfo=UTC)) == []
    assert sync.collect(datetime(2026, 11, 1, 10, 0, tzinfo=UTC), datetime(2026, 11, 1, 11, 0, tzinfo=UTC)) == []


def test_the_poll_asks_for_shipped_and_open_orders_by_status(ss, sync, sqlite_ledger):
    """``/shipments`` plus ``/orders?orderStatus=shipped``: an order marked shipped outside label creation (no
    shipment) is found; cancelled orders are never read; without open orders only ``shipped`` is asked for."""
    start, end = window()
    external = ss.control("shipstation", "POST", "shipstation/orders", {**ORDER, "orderKey": "k-ext",
                                                                        "orderNumber": "SS-EXT"})["order"]["orderId"]
    ss.control("shipstation", "POST", f"shipstation/orders/{external}/ship", {"label": False})
    open_id = ss.control("shipstation", "POST", "shipstation/orders", {**ORDER, "orderKey": "k-open",
                                                                       "orderNumber": "SS-OPEN"})["order"]["orderId"]
    ss.control("shipstation", "POST", "shipstation/orders", {**ORDER, "orderKey": "k-cancel", "orderNumber": "SS-X",
                                                             "orderStatus": "cancelled"})
    assert ss.control("shipstation", "GET", "shipstation/order_queries") == []
    assert sync.collect(start, end) == sorted([external, open_id])
    asked = [q.get("orderStatus") for q in ss.control("shipstation", "GET", "shipstation/order_queries")]
    assert asked == ["shipped", "awaiting_payment", "awaiting_shipment", "on_hold", "pending_fulfillment"]

    shipped_only = ShipStationSync(PIPELINE, shipstation=sync.shipstation, erp=sync.erp, ledger=sqlite_ledger,
                                   book_open_orders=False)
    assert shipped_only.collect(start, end) == [external]
    outcome = shipped_only.book([external])
    assert outcome.done == ["k-ext"]
    [invoice] = invoices(ss)
    assert invoice["status"] == "Open" and "Shipped outside ShipStation labels" in invoice["lines"][-1]["description"]


def test_bc_customers_shipstation_does_not_know_are_reported_not_written(ss, sync, sqlite_ledger):
    """ShipStation v1 only reads customers (made from imported orders): the changed Business Central customers it
    does not know (by username = customer number) are recorded and reported; nothing is written."""
    start, end = window()
    ss.control("shipstation", "POST", "shipstation/orders", dict(ORDER))  # buyer 10000 becomes a ShipStation customer
    assert sync.report_customers(start, end).problems == {}  # no Business Central customer changed: no call
    requests.post(f"{ss.url('business_central')}/_sandbox/business_central/customers/touch",
                  json={"numbers": ["10000", "20000"]}, timeout=10).raise_for_status()
    outcome = sync.report_customers(start, end)
    assert outcome.unchanged == ["10000"]
    assert set(outcome.problems) == {"20000"} and "v1 cannot create or update customers" in outcome.problems["20000"]
    rows = {r["record_key"]: r["state"] for r in fulfilment.rows(sqlite_ledger, PIPELINE, "customer")}
    assert rows == {"10000": "known", "20000": "unknown_customer"}
    answer = requests.put(f"{ss.url('shipstation')}/customers/1", json={}, timeout=10,
                          auth=(sync.shipstation.credentials()))
    assert answer.status_code == 405  # the sandbox, like v1, has no customer update
