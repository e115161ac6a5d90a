"""Fixtures for full DAG runs: a migrated Airflow metadata DB, connections pointing at the sandboxes, and
pipeline settings with short retry delays (dag.test() waits out real retry delays)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from tests.conftest import ROOT, ups_connection

from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET

BC_COMPANY = "4d56a68f-946e-47f8-9a1f-e90c39dc4d37"
PIPELINE = "business_central_ups"


@pytest.fixture(scope="session")
def airflow_db():
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def pipeline_env(sandbox, airflow_db, tmp_path, monkeypatch):
    """Everything a run needs, set the way a user would: AIRFLOW_CONN_* and the pipelines file."""
    sandbox.reset("ups")
    sandbox.reset("business_central")
    bc = sandbox.url("business_central")
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(sandbox.url("ups")))
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps({
        "conn_type": "business_central", "host": bc, "login": BUSINESS_CENTRAL_CLIENT_ID,
        "password": BUSINESS_CENTRAL_CLIENT_SECRET,
        "extra": {"tenant_id": "sandbox-tenant", "environment": "Production", "company_id": BC_COMPANY,
                  "authority": bc}}))
    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    monkeypatch.setenv("AIRFLOW_HOME_LABELS", str(tmp_path / "labels"))
    path = write_pipeline_settings(tmp_path, monkeypatch, PIPELINE)
    return {"sandbox": sandbox, "bc": bc, "ledger_url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "settings_path": path, "tmp": tmp_path}


def write_pipeline_settings(tmp_path: Path, monkeypatch, pipeline: str, **overrides) -> Path:
    """The shipped pipelines file with short retries (dag.test() waits out real retry delays), labels under
    ``tmp_path`` and ``overrides`` for ``pipeline``, used through ``ML_CONNECTOR_PIPELINES``."""
    settings = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
    settings[pipeline].update(retries=1, retry_delay_seconds=1, max_retry_delay_seconds=1,
                              label_folder=f"file://{tmp_path / 'labels'}", **overrides)
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("ML_CONNECTOR_PIPELINES", str(path))
    return path


def update_pipeline_settings(path: Path, pipeline: str, **values) -> None:
    """Change settings of ``pipeline`` in a file :func:`write_pipeline_settings` wrote."""
    settings = yaml.safe_load(path.read_text())
    settings[pipeline].update(values)
    path.write_text(yaml.safe_dump(settings))


#: the sandboxes' scans move at once: the ERP DAG tests track packages however young, each run (shipped
#: defaults: 60 and 55 minutes)
TRACK_AT_ONCE = {"tracking_min_age_minutes": 0, "tracking_poll_interval_minutes": 0}


def load_dag(dag_id: str = PIPELINE):
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def bc_orders(bc_url: str) -> dict[str, dict]:
    return {o["number"]: o for o in requests.get(f"{bc_url}/_sandbox/business_central/orders", timeout=10).json()}


def place_orders(bc_url: str, when: datetime, numbers=None) -> None:
    """Set lastModifiedDateTime of seeded orders (all but the 3-day-old S-ORD101011 by default)."""
    for number in numbers or [n for n in bc_orders(bc_url) if n != "S-ORD101011"]:
        requests.post(f"{bc_url}/_sandbox/business_central/touch",
                      json={"number": number, "modified_at": when.isoformat()}, timeout=10).raise_for_status()


def interval_end(slot: int) -> datetime:
    """A 15-minute boundary ``slot`` intervals in the past, so each test owns distinct runs."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now.replace(minute=now.minute - now.minute % 15) - timedelta(minutes=15 * slot)


def run_interval(dag, end: datetime):
    """dag.test() of the 15-minute interval that ends at ``end`` (a data-interval timetable runs the last
    complete interval before the logical date given)."""
    return dag.test(logical_date=end + timedelta(minutes=1))


def states(dr) -> dict[tuple[str, str], str]:
    return {(ti.task_id.split(".")[-1], ti.rendered_map_index or str(ti.map_index)): ti.state
            for ti in dr.get_task_instances()}


__all__ = ["BC_COMPANY", "PIPELINE", "Path", "bc_orders", "interval_end", "load_dag", "place_orders",
           "run_interval", "states"]
