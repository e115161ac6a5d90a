"""`airflow backfill create` driven by a real scheduler (airflow standalone) against the sandboxes.

Slow (about two minutes): run with `make test-slow`. Every server binds a free loopback port and is stopped
by its process group id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from tests.conftest import ROOT, ups_connection
from tests.dags.conftest import BC_COMPANY, PIPELINE, place_orders

from ml_connector.ledger import Ledger, ShipmentState
from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow(env: dict, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def standalone(sandbox, tmp_path):
    sandbox.reset("ups")
    sandbox.reset("business_central")
    home = tmp_path / "airflow"
    home.mkdir()
    settings = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
    settings[PIPELINE].update(schedule="0 0 * * *", retries=1, retry_delay_seconds=1, max_retry_delay_seconds=2,
                              label_folder=f"file://{tmp_path / 'labels'}")
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(settings))
    bc = sandbox.url("business_central")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))},
        "AIRFLOW_HOME": str(home),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "ML_CONNECTOR_PIPELINES": str(tmp_path / "pipelines.yaml"),
        "AIRFLOW_CONN_UPS_DEFAULT": ups_connection(sandbox.url("ups")),
        "AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT": json.dumps({
            "conn_type": "business_central", "host": bc, "login": BUSINESS_CENTRAL_CLIENT_ID,
            "password": BUSINESS_CENTRAL_CLIENT_SECRET,
            "extra": {"tenant_id": "sandbox-tenant", "environment": "Production", "company_id": BC_COMPANY,
                      "authority": bc}}),
        "AIRFLOW_CONN_ML_CONNECTOR_LEDGER": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}),
    }
    airflow(env, "db", "migrate")
    log = open(tmp_path / "standalone.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/api/v2/version"), 180, "the API server")
        wait_for(lambda: airflow(env, "dags", "unpause", PIPELINE, check=False).returncode == 0, 180,
                 "the DAG to be parsed")
        yield {"env": env, "bc": bc, "sandbox": sandbox, "ledger": f"sqlite:///{tmp_path / 'ledger.db'}",
               "log": tmp_path / "standalone.log"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _backfill_runs_done(env: dict) -> list[dict] | None:
    result = airflow(env, "dags", "list-runs", PIPELINE, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]  # skip log lines
    runs = [r for r in json.loads(lines[-1] if lines else "[]") if r["run_id"].startswith("backfill__")]
    if runs and all(r["state"] in ("success", "failed") for r in runs):
        return runs
    return None


def test_backfill_create_processes_each_missed_day_once(standalone):
    env, bc, sandbox = standalone["env"], standalone["bc"], standalone["sandbox"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day1, day2 = today - timedelta(days=3), today - timedelta(days=2)
    place_orders(bc, today - timedelta(days=20))
    place_orders(bc, day1 + timedelta(hours=9), numbers=["S-ORD101001", "S-ORD101002"])
    place_orders(bc, day2 + timedelta(hours=14), numbers=["S-ORD101003"])

    airflow(env, "backfill", "create", "--dag-id", PIPELINE, "--from-date", day1.date().isoformat(),
            "--to-date", day2.date().isoformat())
    runs = wait_for(lambda: _backfill_runs_done(env), 300, "the backfill runs", interval=5)
    assert len(runs) == 2 and {r["state"] for r in runs} == {"success"}, runs

    rows = {r.order_number: r for r in Ledger(standalone["ledger"]).list(PIPELINE)}
    assert {n for n, r in rows.items() if r.state is ShipmentState.WRITTEN_BACK} >= {
        "S-ORD101001", "S-ORD101002", "S-ORD101003"}
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    assert all(by_reference[n] == 1 for n in ("S-ORD101001", "S-ORD101002", "S-ORD101003"))
    labels = sandbox.counters("ups")["labels_created"]

    # the scheduler closes the first backfill shortly after its runs end; only then is a new one accepted
    wait_for(lambda: airflow(env, "backfill", "create", "--dag-id", PIPELINE, "--from-date", day1.date().isoformat(),
                             "--to-date", day2.date().isoformat(), "--reprocess-behavior", "completed",
                             check=False).returncode == 0, 120, "the first backfill to be closed", interval=3)
    time.sleep(5)
    wait_for(lambda: _backfill_runs_done(env), 300, "the reprocessed backfill runs", interval=5)
    assert sandbox.counters("ups")["labels_created"] == labels
