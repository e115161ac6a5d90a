"""Fixtures shared by the Acumatica tests (hook tests here, the full DAG runs in tests/dags): one sandbox process
serving UPS and Acumatica per test session (per xdist worker), and ``acumatica_default`` pointing at it."""

from __future__ import annotations

import json

import pytest
import requests

from ml_connector_sandbox.credentials import ACUMATICA_PASSWORD, ACUMATICA_TENANT, ACUMATICA_USERNAME


@pytest.fixture(scope="session", name="acumatica_server")
def acumatica_server_fixture():
    """UPS and Acumatica sandboxes in one ``python -m ml_connector_sandbox`` process."""
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["ups", "acumatica"]) as server:
        yield server


@pytest.fixture(name="acumatica")
def acumatica_fixture(acumatica_server, monkeypatch):
    """The sandbox with fresh Acumatica state, and ``acumatica_default`` pointing at it. After the test, no
    session may be left open: every session the code opened was logged out."""
    acumatica_server.reset("acumatica")
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT", acumatica_connection(acumatica_server.url("acumatica")))
    yield acumatica_server
    assert open_sessions(acumatica_server) == 0, "an Acumatica session was left open"


def acumatica_connection(url: str, *, password: str = ACUMATICA_PASSWORD, **extra) -> str:
    """``acumatica_default`` as JSON: the sandbox at ``url`` with the only user it accepts."""
    return json.dumps({"conn_type": "acumatica", "host": url, "login": ACUMATICA_USERNAME, "password": password,
                       "extra": {"endpoint_name": "Default", "endpoint_version": "24.200.001",
                                 "tenant": ACUMATICA_TENANT, **extra}})


def open_sessions(server) -> int:
    return server.control("acumatica", "GET", "acumatica/sessions")["open"]


def shipments(server) -> dict[str, dict]:
    """Every sandbox shipment by number, as plain values (package rows, note, custom, files as base64)."""
    return {s["ShipmentNbr"]: s for s in server.control("acumatica", "GET", "acumatica/shipments")}


def touch(server, when, numbers=None) -> None:
    """Set LastModifiedDateTime of seeded shipments (all but the 3-day-old 000112 by default)."""
    for number in numbers or [n for n in shipments(server) if n != "000112"]:
        requests.post(f"{server.url('acumatica')}/_sandbox/acumatica/touch",
                      json={"number": number, "modified_at": when.isoformat()}, timeout=10).raise_for_status()
