"""End to end through a real, test-started ``airflow api-server``: labels created -> subscribed to Track Alert (v1)
-> the UPS sandbox posts events to the webhook plugin -> inbox -> poll_tracking -> Business Central shows in
transit, then delivered with date and signature. Refusals (401, 400) and a replay are checked on the real server.

Slow: `airflow api-server` takes a while to start. It shares the session's metadata DB (the full DAG runs
are dag.test() in this process), binds a free loopback port, and is stopped by its process group id.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml
from tests.conftest import ROOT, stop_group, ups_connection
from tests.dags.conftest import PIPELINE, bc_orders, interval_end, load_dag, place_orders, run_interval

from ml_connector.ledger import Ledger, ShipmentState, schema

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow_metadata_db")]
BIN = Path(sys.executable).parent
GOOD = ["S-ORD101001", "S-ORD101002", "S-ORD101003", "S-ORD101004", "S-ORD101005", "S-ORD101009", "S-ORD101010"]
CREDENTIAL = "e2e-opaque-credential-4711"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_server(pipeline_env, tmp_path):
    """`airflow api-server` with this repo's plugins folder, on a free port."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT / "sandbox"), str(ROOT)])
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)  # unit-test mode would point it at another metadata DB
    env.pop(webhooks_env := "ML_CONNECTOR_LEDGER_URL", None)  # the API server finds the ledger like the tasks
    assert webhooks_env not in env
    migrated = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    log = open(tmp_path / "api-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if requests.get(f"{base}/ml-connector/webhooks/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("the API server did not serve the webhook plugin:\n"
                                     + (tmp_path / "api-server.log").read_text()[-4000:])
            time.sleep(1)
        yield base
    finally:
        stop_group(proc)
        log.close()


def configure(pipeline_env, monkeypatch, webhook_url: str) -> None:
    sandbox = pipeline_env["sandbox"]
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(sandbox.url("ups"),
                                                                  track_alert_credential=CREDENTIAL))
    path = pipeline_env["settings_path"]
    settings = yaml.safe_load(path.read_text())
    settings[PIPELINE].update(track_alert="v1", track_alert_url=webhook_url)
    path.write_text(yaml.safe_dump(settings))


def test_track_alert_end_to_end_through_the_api_server(pipeline_env, api_server, monkeypatch, tmp_path):
    sandbox, bc = pipeline_env["sandbox"], pipeline_env["bc"]
    url = f"{api_server}/ml-connector/webhooks/ups/track-alert"
    configure(pipeline_env, monkeypatch, url)
    ups = sandbox.url("ups")
    end = interval_end(60)
    place_orders(bc, end - timedelta(minutes=5))
    dag = load_dag()

    # run 1: labels bought and written back; poll_tracking subscribes their numbers with our URL and credential
    run_interval(dag, end)
    ledger = Ledger(pipeline_env["ledger_url"])
    rows = {r.order_number: r for r in ledger.list(PIPELINE)}
    numbers = {n: rows[n].tracking_numbers[0] for n in GOOD}
    subscriptions = {s["tracking_number"]: s for s in requests.get(f"{ups}/_sandbox/ups/subscriptions", timeout=10).json()}
    assert set(subscriptions) == set(numbers.values())
    assert {s["url"] for s in subscriptions.values()} == {url} and {s["style"] for s in subscriptions.values()} == {"v1"}

    # the real server refuses what does not come from UPS, and stores nothing
    event = {"trackingNumber": numbers[GOOD[0]], "localActivityDate": "20261120", "localActivityTime": "101500",
             "activityStatus": {"type": "I", "code": "DP", "description": "Departed"},
             "gmtActivityDate": "20261120", "gmtActivityTime": "151500", "gmtOffset": "-05.00"}
    assert requests.post(url, json=event, timeout=10).status_code == 401
    assert requests.post(url, json=event, headers={"credential": "guess"}, timeout=10).status_code == 401
    assert requests.post(url, data=b"{oops", headers={"credential": CREDENTIAL, "Content-Type": "application/json"},
                         timeout=10).status_code == 400
    assert ledger.inbox_pending("ups") == []

    # packages move; the sandbox's emitter posts each scan to the API server
    for number in numbers.values():
        sandbox.advance_ups_package(number, "in_transit")
    sent = requests.post(f"{ups}/_sandbox/ups/emit", timeout=60).json()["delivered"]
    # origin and departure scans; a label created within the emitter's one-second grace before its subscription
    # (a fast run) is sent too: at most one more event per number
    assert 2 * len(numbers) <= sent <= 3 * len(numbers)
    pending = ledger.inbox_pending("ups")
    assert len(pending) == sent
    replay = requests.post(url, data=pending[0]["payload"].encode(),
                           headers={"credential": CREDENTIAL, "Content-Type": "application/json"}, timeout=10)
    assert replay.status_code == 200 and replay.json() == {"status": "duplicate"}
    assert len(ledger.inbox_pending("ups")) == sent

    # run 2: the inbox moves Business Central to in transit, without a single Track API call
    tracked_before = sandbox.counters("ups")["track_requests"]
    run_interval(dag, end + timedelta(minutes=15))
    assert sandbox.counters("ups")["track_requests"] == tracked_before
    assert ledger.inbox_pending("ups") == []
    erp = bc_orders(bc)
    for order in GOOD:
        assert erp[order]["mlShipmentStatus"] == "in_transit", erp[order]
        assert ledger.find_by_number(PIPELINE, order).state is ShipmentState.IN_TRANSIT

    # delivered: date from the event, signature from one proof-of-delivery lookup per package
    for number in numbers.values():
        sandbox.advance_ups_package(number, "delivered")
    assert requests.post(f"{ups}/_sandbox/ups/emit", timeout=60).json()["delivered"] == 2 * len(numbers)
    run_interval(dag, end + timedelta(minutes=30))
    erp = bc_orders(bc)
    for order in GOOD:
        row = ledger.find_by_number(PIPELINE, order)
        assert row.state is ShipmentState.DELIVERED and row.delivered_at
        assert erp[order]["mlShipmentStatus"] == "delivered"
        assert not erp[order]["mlDeliveredAt"].startswith("0001")
        assert "received by JANE DOE" in erp[order]["mlLastTrackingEvent"]
    assert sandbox.counters("ups")["track_requests"] == tracked_before + len(numbers)
    assert sandbox.validation_errors("ups") == []
    assert json.dumps(ledger.inbox_pending("ups")) == "[]"

    # never a leaked secret: the credential is in no log of the API server and in no plain ledger column
    assert CREDENTIAL not in (tmp_path / "api-server.log").read_text()
    with ledger.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            plain = [r for r in rows if CREDENTIAL in repr(tuple(r))]
            assert plain == [], table.name
