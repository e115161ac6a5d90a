"""make run serves the ShipStation sandbox and points shipstation_default (and its v2 URL) at it; make demo (and
make run's first runs) place ShipStation demo orders into the interval and print what the two-way pipeline did."""

from __future__ import annotations

from tests.conftest import ROOT

from ml_connector_sandbox import available_vendors, devtools


def test_make_run_serves_the_shipstation_sandbox_and_repoints_the_connection():
    ports = devtools.sandbox_ports({})
    assert ports["shipstation"] == 8106 and ports["ups"] == 8101 and ports["syspro"] == 8105
    assert "shipstation" in available_vendors()
    urls = {"shipstation": "http://127.0.0.1:9996", "business_central": "http://127.0.0.1:9997"}
    connections = {c["conn_id"]: c for c in devtools.read_connections(ROOT / "airflow_settings.yaml",
                                                                      sandbox_urls=urls)}
    ss = connections["shipstation_default"]
    assert ss["host"] == "http://127.0.0.1:9996" and ss["port"] == 9996
    assert ss["extra"]["v2_url"] == "http://127.0.0.1:9996"


def test_make_demo_and_make_run_include_the_two_way_pipeline():
    assert "business_central_shipstation" in devtools.demo_pipelines()
    start, end = devtools.data_interval("business_central_shipstation", "2026-11-29T10:07:00+00:00")
    assert (start.isoformat(), end.isoformat()) == ("2026-11-29T09:45:00+00:00", "2026-11-29T10:00:00+00:00")


def test_the_demo_placement_and_report_show_what_the_pipeline_did(ss, sqlite_ledger):
    from datetime import UTC, datetime, timedelta

    from ml_connector.erp.business_central.hook import BusinessCentralHook
    from ml_connector.fulfilment.shipstation.hook import ShipStationHook
    from ml_connector.fulfilment.shipstation.sync import ShipStationSync
    from ml_connector_sandbox.shipstation import devtools as ss_devtools

    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=2)
    urls = {"shipstation": ss.url("shipstation"), "business_central": ss.url("business_central")}
    said = devtools.place_seeded("business_central_shipstation", urls, end)
    assert said.startswith("placed 5 shipstation sandbox order(s)") and "left out: demo-ss-1006" in said
    again = devtools.place_seeded("business_central_shipstation", urls, end)  # twice: nothing shipped twice
    assert again == said
    orders = ss.control("shipstation", "GET", "shipstation/orders")
    assert len(orders) == len(ss_devtools.DEMO_ORDERS)
    sync = ShipStationSync("business_central_shipstation", shipstation=ShipStationHook(ledger=sqlite_ledger),
                           erp=BusinessCentralHook(ledger=sqlite_ledger), ledger=sqlite_ledger)
    start = end - timedelta(minutes=20)
    sync.push_items(start, end)
    sync.report_customers(start, end)
    sync.book(sync.collect(start, end))
    text = devtools.fulfilment_report("business_central_shipstation", sqlite_ledger)
    assert ("items pushed: 1   SKUs missing in ShipStation: 1   customers unknown to ShipStation: 1   "
            "orders booked: 3   drafts: 1   record errors: 1") in text
    assert "demo-ss-1006" not in text and "SS-1005: customer '77777' is not in" in text
    assert ss.counters("shipstation")["rate_limited"] == 0
