"""The ShipStation hook against the sandbox: Basic and API-Key auth, the ledger-held v1 budget shared by two hooks
(no 429 in a normal run), a 429 waited out, and resource URLs only followed on the configured host."""

from __future__ import annotations

import json

import pytest
from tests.fulfilment.shipstation.conftest import shipstation_connection

from ml_connector.errors import AuthenticationError, ConfigurationError
from ml_connector.fulfilment.shipstation.hook import ShipStationHook


def test_wrong_secret_is_refused(ss, sqlite_ledger, monkeypatch):
    conn = json.loads(shipstation_connection(ss.url("shipstation")))
    conn["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_SHIPSTATION_DEFAULT", json.dumps(conn))
    with pytest.raises(AuthenticationError):
        ShipStationHook(ledger=sqlite_ledger).products_by_sku("1896-S")
    ok, message = ShipStationHook(ledger=sqlite_ledger).test_connection()
    assert not ok and "wrong" not in message


def test_two_hooks_share_the_budget_and_see_no_429(ss, sqlite_ledger):
    # a 5-call window of 1 s stands for 40 a minute: 12 calls from two "workers" take three windows
    ss.set_knobs("shipstation", rate_limit_per_minute=5, rate_window_seconds=1.0)
    hooks = [ShipStationHook(ledger=sqlite_ledger), ShipStationHook(ledger=sqlite_ledger)]
    for hook in hooks:
        hook.extras["calls_per_minute"] = 5
    for _ in range(6):
        for hook in hooks:
            assert hook.products_by_sku("1896-S")[0]["sku"] == "1896-S"
    assert ss.counters("shipstation")["rate_limited"] == 0
    assert ss.counters("shipstation")["v1_requests"] == 12
    assert sum(h.waited for h in hooks) > 0 and sum(h.rate_limited for h in hooks) == 0


def test_rate_share_leaves_slots_to_other_integrations(ss, sqlite_ledger):
    hook = ShipStationHook(ledger=sqlite_ledger)
    hook.extras["rate_share"] = "0.5"
    assert hook.reserve == 20
    hook.extras["rate_share"] = "2"
    with pytest.raises(ConfigurationError, match="rate_share"):
        _ = hook.reserve


def test_a_429_waits_for_the_announced_reset(ss, sqlite_ledger):
    ss.set_knobs("shipstation", burst_429=2)
    waits = []
    hook = ShipStationHook(ledger=sqlite_ledger, sleep=waits.append)
    assert hook.products_by_sku("1900-S")[0]["sku"] == "1900-S"
    assert hook.rate_limited == 2 and len(waits) >= 2


def test_resource_urls_are_followed_only_on_the_configured_host(ss, sqlite_ledger):
    hook = ShipStationHook(ledger=sqlite_ledger)
    placed = ss.control("shipstation", "POST", "shipstation/orders", {
        "orderNumber": "W-1", "orderKey": "wk-1", "orderStatus": "awaiting_shipment",
        "items": [{"sku": "1896-S", "quantity": 1, "unitPrice": 10}]})
    body = hook.follow(placed["webhooks"][0]["resource_url"])
    assert [o["orderKey"] for o in body["orders"]] == ["wk-1"]
    before = ss.counters("shipstation")["v1_requests"]
    with pytest.raises(ConfigurationError, match="not on the configured ShipStation host"):
        hook.follow("https://evil.example.com/orders?importBatch=1")
    with pytest.raises(ConfigurationError):
        hook.follow(ss.url("shipstation").replace("127.0.0.1", "localhost") + "/orders")
    assert ss.counters("shipstation")["v1_requests"] == before


def test_v2_label_with_the_api_key(ss, sqlite_ledger):
    hook = ShipStationHook(ledger=sqlite_ledger)
    label = hook.create_label({"service_code": "usps_priority_mail", "ship_to": {"name": "A"},
                               "ship_from": {"name": "B"}, "packages": [{"weight": {"value": 1, "unit": "pound"}}]})
    assert label["tracking_number"]
    hook.extras["v2_api_key"] = "wrong"
    del hook.__dict__["v2_auth"]
    with pytest.raises(AuthenticationError):
        hook.create_label({"service_code": "x", "ship_to": {"name": "A"}, "ship_from": {"name": "B"},
                           "packages": [{}]})


def test_an_older_answer_never_raises_the_count_of_its_window(sqlite_ledger):
    from ml_connector.ledger import rate_budget

    # answers of one window announce resets up to a second apart (whole seconds from now)
    rate_budget.observe(sqlite_ledger, "ss", minute=(2, 1060.4), same_window=2.0, now=1000.0)
    rate_budget.observe(sqlite_ledger, "ss", minute=(10, 1059.6), same_window=2.0, now=1000.5)  # late, older call
    assert rate_budget.take_call(sqlite_ledger, "ss", now=1001.0, per_minute=40, reserve=0).wait == 0
    assert rate_budget.take_call(sqlite_ledger, "ss", now=1001.0, per_minute=40, reserve=0).wait == 0
    assert rate_budget.take_call(sqlite_ledger, "ss", now=1001.0, per_minute=40, reserve=0).wait > 0
    # once the window has reset, a new window's count is taken as announced
    rate_budget.observe(sqlite_ledger, "ss", minute=(39, 1121.0), same_window=2.0, now=1061.0)
    assert rate_budget.take_call(sqlite_ledger, "ss", now=1062.0, per_minute=40, reserve=0).wait == 0
