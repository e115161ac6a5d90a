"""Exact Online tests: one sandbox process serving UPS and Exact Online for the session, the connection pointing
at it (only the host differs from production), a fresh SQLite ledger per test."""

from __future__ import annotations

import json

import pytest

from ml_connector_sandbox.credentials import EXACT_ONLINE_CLIENT_ID, EXACT_ONLINE_CLIENT_SECRET
from ml_connector_sandbox.exact_online import INITIAL_REFRESH_TOKEN, WEBHOOK_SECRET

DIVISION = 123456


def exact_connection(url: str, **extra) -> str:
    """``exact_online_default`` as JSON for the sandbox at ``url``."""
    return json.dumps({"conn_type": "exact_online", "host": url, "login": EXACT_ONLINE_CLIENT_ID,
                       "password": EXACT_ONLINE_CLIENT_SECRET,
                       "extra": {"division": str(DIVISION), "refresh_token": INITIAL_REFRESH_TOKEN,
                                 "webhook_secret": WEBHOOK_SECRET, **extra}})


@pytest.fixture(scope="session")
def exact_sandbox():
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["ups", "exact_online"]) as server:
        yield server


@pytest.fixture
def exact(exact_sandbox, monkeypatch):
    """The sandbox, reset, with ``exact_online_default`` pointing at it."""
    exact_sandbox.reset("exact_online")
    exact_sandbox.reset("ups")
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT", exact_connection(exact_sandbox.url("exact_online")))
    return exact_sandbox
