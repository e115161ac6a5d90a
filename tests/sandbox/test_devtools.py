"""devtools: reading airflow_settings.yaml into Airflow connections, re-pointed at a running sandbox."""

from __future__ import annotations

import json

import pytest
from tests.conftest import ROOT

from ml_connector_sandbox.devtools import connections_env, read_connections, url_port

SETTINGS = ROOT / "airflow_settings.yaml"


@pytest.mark.parametrize("url,port", [
    ("http://127.0.0.1:8101", 8101), ("https://onlinetools.ups.com", 443), ("http://localhost/", 80),
    ("HTTPS://api.businesscentral.dynamics.com:8443/x", 8443), ("onlinetools.ups.com", None),
    ("sqlite:///tmp/ledger.db", None), (None, None), ("http://host:notaport", None),
])
def test_url_port(url, port):
    assert url_port(url) == port


def test_settings_file_connections_keep_their_host_port():
    connections = {c["conn_id"]: c for c in read_connections(SETTINGS)}
    assert (connections["ups_default"]["host"], connections["ups_default"]["port"]) == ("http://127.0.0.1:8101", 8101)
    assert connections["business_central_default"]["port"] == 8102
    assert "port" not in connections["ml_connector_ledger"]  # only ml-connector's own types get a port


def test_sandbox_urls_move_host_authority_and_port_together():
    urls = {"ups": "http://127.0.0.1:40001", "business_central": "http://127.0.0.1:40002"}
    connections = {c["conn_id"]: c for c in read_connections(SETTINGS, sandbox_urls=urls)}
    ups, bc = connections["ups_default"], connections["business_central_default"]
    assert (ups["host"], ups["port"]) == ("http://127.0.0.1:40001", 40001)
    assert (bc["host"], bc["port"], bc["extra"]["authority"]) == ("http://127.0.0.1:40002", 40002,
                                                                  "http://127.0.0.1:40002")


def test_a_missing_port_is_taken_from_the_host(tmp_path):
    settings = tmp_path / "airflow_settings.yaml"
    settings.write_text(
        "airflow:\n  connections:\n"
        "    - {conn_id: ups_default, conn_type: ups, conn_host: 'https://onlinetools.ups.com'}\n"
        "    - {conn_id: other_http, conn_type: http, conn_host: 'https://example.com'}\n")
    connections = {c["conn_id"]: c for c in read_connections(settings)}
    assert connections["ups_default"]["port"] == 443
    assert "port" not in connections["other_http"]
    exported = connections_env(list(connections.values()))
    assert json.loads(exported.splitlines()[0].split("=", 1)[1].strip("'"))["port"] == 443


def test_the_settings_file_declares_one_pool_per_api():
    from ml_connector_sandbox.devtools import read_pools

    pools = {p["name"]: p for p in read_pools(SETTINGS)}
    assert set(pools) == {"ml_connector_ups", "ml_connector_business_central", "ml_connector_acumatica",
                          "ml_connector_exact_online", "ml_connector_syspro"}
    assert all(p["slots"] >= 1 and p["description"] for p in pools.values())


@pytest.mark.parametrize("entry", ["{pool_slot: 4}", "{pool_name: p, pool_slot: 0}", "{pool_name: p}",
                                   "{pool_name: p, pool_slot: '4'}", "{pool_name: p, pool_slot: -2}"])
def test_a_pool_without_a_name_or_usable_slots_is_refused(tmp_path, entry):
    from ml_connector_sandbox.devtools import read_pools

    settings = tmp_path / "airflow_settings.yaml"
    settings.write_text(f"airflow:\n  pools:\n    - {entry}\n")
    with pytest.raises(ValueError, match="needs a pool_name and a pool_slot >= 1"):
        read_pools(settings)


def test_no_pools_section_reads_as_none(tmp_path):
    from ml_connector_sandbox.devtools import read_pools

    settings = tmp_path / "airflow_settings.yaml"
    settings.write_text("airflow:\n  connections: []\n  pools: []\n")
    assert read_pools(settings) == []
    settings.write_text("airflow:\n  pools:\n    - {pool_name: unlimited, pool_slot: -1}\n")
    assert read_pools(settings) == [{"name": "unlimited", "slots": -1, "description": ""}]
