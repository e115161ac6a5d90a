"""Fixtures of the hook tests: loopback servers, Airflow connections from environment variables, the masker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.hooks.loopback import Loopback


@pytest.fixture
def loopback():
    with Loopback() as server:
        yield server


@pytest.fixture
def other_loopback():
    with Loopback() as server:
        yield server


@pytest.fixture
def set_connection(monkeypatch):
    """``set_connection("conn_id", host=..., login=..., extra={...})`` defines an Airflow connection."""

    def set_connection(conn_id: str, **fields: Any) -> None:
        fields.setdefault("conn_type", "http")
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))

    return set_connection


@pytest.fixture
def masked(monkeypatch) -> list[str]:
    """Everything registered with the log masker during the test."""
    values: list[str] = []
    monkeypatch.setattr("ml_connector.http.mask", lambda value: values.append(value) if value else None)
    return values
