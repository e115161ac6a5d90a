"""The Acumatica push-notification router, served by FastAPI's TestClient the way the webhook plugin mounts it."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ml_connector import registry
from ml_connector.erp.acumatica.mapping import shipment_numbers
from ml_connector.ledger import Ledger

PATH = "/ml-connector/webhooks/acumatica"
SECRET = "push-secret-value"
PAYLOAD = {"Inserted": [{"ShipmentNbr": "000101", "Status": "Open"}],
           "Deleted": [{"ShipmentNbr": "000101", "Status": "On Hold"}],
           "Query": "MLShipmentsReady", "CompanyId": "RevisionTwo", "Id": "a7c3b0e2-1111-4b5c-9d2e-000000000001",
           "TimeStamp": 638680000000000000, "AdditionalInfo": {}}


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT", json.dumps({
        "conn_type": "acumatica", "host": "https://acme.example.com", "login": "u", "password": "p",
        "extra": {"push_header_name": "X-Acu-Push", "push_header_value": SECRET}}))
    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    app = FastAPI()
    app.include_router(registry.load(registry.erp("acumatica").webhook), prefix=PATH)  # as the plugin mounts it
    return TestClient(app), Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def test_a_push_with_the_configured_header_is_stored_once(client):
    http, ledger = client
    first = http.post(PATH, json=PAYLOAD, headers={"X-Acu-Push": SECRET})
    again = http.post(PATH, json=PAYLOAD, headers={"X-Acu-Push": SECRET})  # Acumatica redelivers
    assert (first.status_code, first.json()) == (200, {"status": "stored"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    pending = ledger.inbox_pending("acumatica")
    assert len(pending) == 1 and json.loads(pending[0]["payload"])["Id"] == PAYLOAD["Id"]
    assert shipment_numbers(json.loads(pending[0]["payload"])) == ["000101"]


@pytest.mark.parametrize("headers", [{}, {"X-Acu-Push": "wrong"}, {"X-ML-Connector-Token": SECRET},
                                     {"X-Acu-Push": SECRET[:-1]}])
def test_a_push_without_the_configured_header_value_is_refused(client, headers):
    http, ledger = client
    response = http.post(PATH, json=PAYLOAD, headers=headers)
    assert response.status_code == 401
    assert SECRET not in response.text
    assert ledger.inbox_pending("acumatica") == []


def test_no_configured_value_refuses_every_push(client, monkeypatch):
    http, ledger = client
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT", json.dumps({
        "conn_type": "acumatica", "host": "https://acme.example.com", "login": "u", "password": "p"}))
    assert http.post(PATH, json=PAYLOAD, headers={"X-ML-Connector-Token": ""}).status_code == 401
    assert ledger.inbox_pending("acumatica") == []


def test_a_body_without_id_is_refused(client):
    http, ledger = client
    response = http.post(PATH, json={"Inserted": []}, headers={"X-Acu-Push": SECRET})
    assert response.status_code == 400
    assert ledger.inbox_pending("acumatica") == []


def test_shipment_numbers_read_inserted_rows_only():
    assert shipment_numbers({"Inserted": [{"ShipmentNbr": "1"}, {"ShipmentNbr": {"value": "2"}}, {"X": 1},
                                          {"ShipmentNbr": "1"}], "Deleted": [{"ShipmentNbr": "3"}]}) == ["1", "2"]
    assert shipment_numbers({"Inserted": [{"Nbr": "7"}]}, "Nbr") == ["7"]
