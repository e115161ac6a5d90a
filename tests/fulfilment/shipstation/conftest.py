"""ShipStation tests: one sandbox process serving ShipStation and Business Central for the session, connections
pointing at it (only the hosts differ from production), a fresh SQLite ledger per test."""

from __future__ import annotations

import json

import pytest

from ml_connector_sandbox.credentials import (
    BUSINESS_CENTRAL_CLIENT_ID,
    BUSINESS_CENTRAL_CLIENT_SECRET,
    SHIPSTATION_API_KEY,
    SHIPSTATION_API_SECRET,
    SHIPSTATION_V2_API_KEY,
)

BC_COMPANY = "4d56a68f-946e-47f8-9a1f-e90c39dc4d37"
WEBHOOK_TOKEN = "test-webhook-token-0123456789abcdef"


def shipstation_connection(url: str, **extra) -> str:
    return json.dumps({"conn_type": "shipstation", "host": url, "login": SHIPSTATION_API_KEY,
                       "password": SHIPSTATION_API_SECRET,
                       "extra": {"v2_url": url, "v2_api_key": SHIPSTATION_V2_API_KEY, "webhook_token": WEBHOOK_TOKEN,
                                 **extra}})


def bc_connection(url: str) -> str:
    return json.dumps({"conn_type": "business_central", "host": url, "login": BUSINESS_CENTRAL_CLIENT_ID,
                       "password": BUSINESS_CENTRAL_CLIENT_SECRET,
                       "extra": {"tenant_id": "sandbox-tenant", "environment": "Production", "company_id": BC_COMPANY,
                                 "authority": url}})


@pytest.fixture(scope="session")
def ss_sandbox():
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["shipstation", "business_central"]) as server:
        yield server


@pytest.fixture
def ss(ss_sandbox, monkeypatch):
    """The sandbox, reset, with ``shipstation_default`` and ``business_central_default`` pointing at it."""
    ss_sandbox.reset("shipstation")
    ss_sandbox.reset("business_central")
    monkeypatch.setenv("AIRFLOW_CONN_SHIPSTATION_DEFAULT", shipstation_connection(ss_sandbox.url("shipstation")))
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", bc_connection(ss_sandbox.url("business_central")))
    return ss_sandbox
