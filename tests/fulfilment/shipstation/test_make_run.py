"""make run serves the ShipStation sandbox and points shipstation_default (and its v2 URL) at it; the two-way
pipeline is not in make demo's ERP -> UPS loop (it has its own DAG shape)."""

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


def test_make_demo_leaves_the_two_way_pipeline_out():
    assert "business_central_shipstation" not in devtools.demo_pipelines()
