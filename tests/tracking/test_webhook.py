"""The Track Alert webhook route, through the plugin's app: authentication first (401 stores nothing), spec checks
(400), a size limit (413), idempotent storage in the inbox, and the v2 token URL."""

from __future__ import annotations

import base64
import json
import sys

import pytest
from fastapi.testclient import TestClient
from tests.conftest import ROOT

from ml_connector import registry, webhooks
from ml_connector.carriers.ups import webhook
from ml_connector.ledger import Ledger
from ml_connector.secrets import SecretStore

EVENT = {"trackingNumber": " 1Z204W4R0308071865", "localActivityDate": "20240423", "localActivityTime": "091519",
         "activityLocation": {"city": "Charlotte", "stateProvince": "NC", "country": "US"},
         "activityStatus": {"type": "I", "code": "OT", "description": "Out for Delivery", "descriptionCode": "021"},
         "gmtActivityDate": "20240423", "gmtActivityTime": "131519", "gmtOffset": "-04.00"}
URL = "/ml-connector/webhooks/ups/track-alert"


@pytest.fixture
def app_ledger(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(webhooks.LEDGER_URL_ENV, url)
    webhooks.reset()
    yield Ledger(url)
    webhooks.reset()


@pytest.fixture
def client(app_ledger) -> TestClient:
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        import ml_connector_webhooks as plugin
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount(plugin.URL_PREFIX, plugin.create_app())  # what Airflow does with fastapi_apps
    return TestClient(outer)


def store(ledger: Ledger) -> SecretStore:
    return SecretStore(ledger)


def test_the_plugin_mounts_every_registry_webhook_under_its_vendor_name(client):
    expected = sorted(v.name for v in registry.vendors() if v.webhook)
    assert sorted(client.get("/ml-connector/webhooks/health").json()["vendors"]) == expected
    assert "ups" in expected


def test_no_or_a_wrong_credential_is_refused_and_stores_nothing(client, app_ledger):
    webhook.remember_credential(store(app_ledger), "right-one", previous_valid_until=0)
    assert client.post(URL, json=EVENT).status_code == 401
    assert client.post(URL, json=EVENT, headers={"credential": "wrong"}).status_code == 401
    assert client.post(URL, content=b"{not json", headers={"credential": "wrong"}).status_code == 401
    assert app_ledger.inbox_pending("ups") == []


def test_an_event_is_stored_once_and_bad_bodies_get_400_or_413(client, app_ledger):
    webhook.remember_credential(store(app_ledger), "right-one", previous_valid_until=0)
    headers = {"credential": "right-one"}
    first = client.post(URL, json=EVENT, headers=headers)
    assert first.status_code == 200 and first.json() == {"status": "stored"}
    assert client.post(URL, json=EVENT, headers=headers).json() == {"status": "duplicate"}
    assert len(app_ledger.inbox_pending("ups")) == 1
    assert client.post(URL, content=b"{not json", headers=headers).status_code == 400
    missing = {k: v for k, v in EVENT.items() if k != "activityStatus"}
    answer = client.post(URL, json=missing, headers=headers)
    assert answer.status_code == 400 and "activityStatus" in answer.json()["error"]
    big = {**EVENT, "deliveryPhoto": "A" * (webhook.MAX_BODY_BYTES + 1)}
    assert client.post(URL, content=json.dumps(big).encode(), headers=headers).status_code == 413
    assert len(app_ledger.inbox_pending("ups")) == 1


def test_a_rotated_credential_keeps_the_previous_one_until_it_expires(client, app_ledger):
    secrets = store(app_ledger)
    webhook.remember_credential(secrets, "old", previous_valid_until=0)
    import time
    assert webhook.remember_credential(secrets, "new", previous_valid_until=time.time() + 3600) is True
    assert client.post(URL, json=EVENT, headers={"credential": "old"}).status_code == 200
    assert client.post(URL, json={**EVENT, "gmtActivityTime": "131520"},
                       headers={"credential": "new"}).status_code == 200
    webhook.remember_credential(secrets, "newer", previous_valid_until=time.time() - 1)  # old one expired
    assert client.post(URL, json=EVENT, headers={"credential": "new"}).status_code == 401


def test_v2_needs_a_token_from_our_token_url_and_the_client_id(client, app_ledger):
    webhook.remember_v2_client(store(app_ledger), api_key="our-ups-client-id", token_client_id="ups-portal",
                               token_client_secret="portal-secret")
    assert client.post(URL, json=EVENT, headers={"x-api-key": "our-ups-client-id"}).status_code == 401
    basic = base64.b64encode(b"ups-portal:wrong").decode()
    assert client.post("/ml-connector/webhooks/ups/oauth/token",
                       headers={"Authorization": f"Basic {basic}"}).status_code == 401
    basic = base64.b64encode(b"ups-portal:portal-secret").decode()
    token = client.post("/ml-connector/webhooks/ups/oauth/token", headers={"Authorization": f"Basic {basic}"},
                        data={"grant_type": "client_credentials"}).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.post(URL, json=EVENT, headers={**bearer, "x-api-key": "someone-else"}).status_code == 401
    assert client.post(URL, json=EVENT, headers={**bearer, "x-api-key": "our-ups-client-id"}).status_code == 200


def test_an_api_server_without_fernet_keys_answers_503_and_stores_nothing(client, app_ledger, monkeypatch):
    monkeypatch.delenv("ML_CONNECTOR_FERNET_KEYS")
    webhooks.reset()
    assert client.post(URL, json=EVENT, headers={"credential": "anything"}).status_code == 503
    assert app_ledger.inbox_pending("ups") == []
