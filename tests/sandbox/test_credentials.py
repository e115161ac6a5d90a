"""The sandbox credentials are defined once (ml_connector_sandbox.credentials) and are what airflow_settings.yaml uses."""

from __future__ import annotations

import yaml
from tests.conftest import ROOT

from ml_connector_sandbox import credentials
from ml_connector_sandbox.devtools import SANDBOX_FOR_CONNECTION


def test_airflow_settings_use_the_sandbox_credentials():
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    connections = {c["conn_id"]: c for c in settings["airflow"]["connections"]}
    for conn_id, vendor in SANDBOX_FOR_CONNECTION.items():
        conn = connections[conn_id]
        assert (conn["conn_login"], conn["conn_password"]) == credentials.SANDBOX_CREDENTIALS[vendor], conn_id


def test_every_sandbox_vendor_has_credentials():
    import ml_connector_sandbox

    assert set(credentials.SANDBOX_CREDENTIALS) == set(ml_connector_sandbox.vendor_names())
    assert credentials.SANDBOX_CREDENTIALS["ups"] == ("sandbox-client-id", "sandbox-client-secret")
    assert credentials.SANDBOX_CREDENTIALS["business_central"] == (
        "sandbox-entra-client-id", "sandbox-entra-client-secret")
