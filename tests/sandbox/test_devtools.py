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
