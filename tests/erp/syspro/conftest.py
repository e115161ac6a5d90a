"""SYSPRO test fixtures: one sandbox process (UPS + SYSPRO) per test session, and ``syspro_default`` pointing at it."""

from __future__ import annotations

import json

import pytest
import requests

from ml_connector_sandbox.credentials import SYSPRO_OPERATOR, SYSPRO_OPERATOR_PASSWORD

COMPANY = "EDU1"
ODATA_USER, ODATA_PASSWORD = "sandbox-odata-user", "sandbox-odata-password"


def syspro_connection(url: str, **overrides) -> str:
    """``syspro_default`` as JSON for the sandbox at ``url`` (only the hosts differ from production)."""
    extra = {"company_id": COMPANY, "odata_url": f"{url}/SYSPRO8OData", "odata_user": ODATA_USER,
             "odata_password": ODATA_PASSWORD, **overrides.pop("extra", {})}
    conn = {"conn_type": "syspro", "host": f"{url}/SYSPROWCFService/Rest", "login": SYSPRO_OPERATOR,
            "password": SYSPRO_OPERATOR_PASSWORD, "extra": extra}
    conn.update(overrides)
    return json.dumps(conn)


def open_sessions(url: str) -> int:
    return requests.get(f"{url}/_sandbox/syspro/sessions", timeout=10).json()["open"]


def custom_forms(url: str) -> dict[tuple[str, str], dict[str, str]]:
    """(form type, key) -> {field: value}, read back from the sandbox."""
    forms: dict[tuple[str, str], dict[str, str]] = {}
    for item in requests.get(f"{url}/_sandbox/syspro/custom_forms", timeout=10).json():
        forms.setdefault((item["form_type"], item["key"]), {})[item["field"]] = item["value"]
    return forms


def place(url: str, at, *, entity_set=None, keys=None, spacing_seconds=0) -> list[str]:
    response = requests.post(f"{url}/_sandbox/syspro/place", json={
        "at": at.isoformat(), "entity_set": entity_set, "keys": keys, "spacing_seconds": spacing_seconds},
        timeout=10)
    response.raise_for_status()
    return response.json()["placed"]


@pytest.fixture(scope="session")
def syspro_sandbox():
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["ups", "syspro"]) as server:
        yield server


@pytest.fixture
def syspro(syspro_sandbox, monkeypatch):
    """The sandbox with SYSPRO's state reset and ``syspro_default`` pointing at it."""
    syspro_sandbox.reset("syspro")
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT", syspro_connection(syspro_sandbox.url("syspro")))
    return syspro_sandbox
