"""make run / make demo include syspro_ups: the sandbox, the connection re-pointed with its paths, the demo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import ROOT

from ml_connector_sandbox import devtools


def test_the_syspro_connection_is_pointed_at_the_sandbox_with_its_paths():
    urls = {"syspro": "http://127.0.0.1:9999", "ups": "http://127.0.0.1:9998",
            "business_central": "http://127.0.0.1:9997"}
    connections = {c["conn_id"]: c for c in devtools.read_connections(ROOT / "airflow_settings.yaml",
                                                                      sandbox_urls=urls)}
    syspro = connections["syspro_default"]
    assert syspro["host"] == "http://127.0.0.1:9999/SYSPROWCFService/Rest" and syspro["port"] == 9999
    assert syspro["extra"]["odata_url"] == "http://127.0.0.1:9999/SYSPRO8OData"
    bc = connections["business_central_default"]
    assert bc["host"] == "http://127.0.0.1:9997" and bc["extra"]["authority"] == "http://127.0.0.1:9997"
    assert connections["ups_default"]["host"] == "http://127.0.0.1:9998"


def test_make_run_serves_the_syspro_sandbox_and_make_demo_runs_the_pipeline():
    assert "syspro" in devtools.sandbox_ports({})
    assert devtools.demo_pipelines() == ["business_central_ups", "acumatica_ups", "exact_online_ups", "syspro_ups",
                                        "business_central_shipstation"]
    start, end = devtools.data_interval("syspro_ups", datetime(2026, 11, 29, 10, 7, tzinfo=UTC).isoformat())
    assert end - start == timedelta(minutes=15)


def test_demo_places_the_seeded_documents_in_the_interval(syspro):
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    from ml_connector_sandbox.syspro.devtools import place_released

    placed = [number for number, _at in place_released(syspro.url("syspro"), end)]
    assert "ArInvoice:100201" in placed and "PorMasterHdr:300101" in placed
