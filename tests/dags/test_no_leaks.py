"""Never a leaked secret, after a full run: the client secrets and the bearer tokens appear in no XCom, no task
log line and no ledger column (the token is only in ml_secrets' encrypted column); XComs carry no label."""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.dags.conftest import PIPELINE, interval_end, load_dag, place_orders, run_interval

from ml_connector.ledger import Ledger
from ml_connector.secrets import SecretStore

pytestmark = pytest.mark.xdist_group("airflow_metadata_db")


def test_no_secret_or_label_in_xcoms_logs_or_plain_ledger_columns(pipeline_env, caplog):
    bc = pipeline_env["bc"]
    end = interval_end(11)
    place_orders(bc, end - timedelta(days=5))
    place_orders(bc, end - timedelta(minutes=5), numbers=["S-ORD101001", "S-ORD101002"])
    caplog.set_level(logging.DEBUG)
    dr = run_interval(load_dag(), end)

    ledger = Ledger(pipeline_env["ledger_url"])
    store = SecretStore(ledger)
    with ledger.read() as conn:
        names = [r.name for r in conn.execute(sa.text("SELECT name FROM ml_secrets"))]
    tokens = [store.get(name).value for name in names]
    assert len(tokens) == 2  # one UPS token, one Entra token, shared by every task of the run
    secrets = [json.loads(os.environ[v])["password"] for v in
               ("AIRFLOW_CONN_UPS_DEFAULT", "AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT")]
    forbidden = [*tokens, *secrets]

    # every XCom of the run
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.scalars(sa.select(XComModel).where(XComModel.dag_id == PIPELINE,
                                                           XComModel.run_id == dr.run_id)).all()
        xcom_text = " ".join(json.dumps(x.value, default=str) for x in xcoms)
    assert xcoms and "S-ORD101001" in xcom_text
    # every ledger table, every column but the encrypted one
    with ledger.read() as conn:
        tables = [t for t in sa.inspect(conn).get_table_names() if t.startswith("ml_")]
        ledger_text = " ".join(
            json.dumps([dict(row._mapping) for row in conn.execute(sa.text(f"SELECT * FROM {t}"))], default=str)
            for t in tables if t != "ml_secrets")
        ledger_text += json.dumps([{k: v for k, v in row._mapping.items() if k != "ciphertext"}
                                   for row in conn.execute(sa.text("SELECT * FROM ml_secrets"))], default=str)
    logs = caplog.text
    assert "/api/shipments/v2409/ship -> 200" in logs  # the task logs were captured
    for value in forbidden:
        assert value and value not in xcom_text and value not in ledger_text and value not in logs
    # labels go to the label folder, never into XCom (GIF images start with GIF89a; base64 R0lGOD)
    assert "GIF89a" not in xcom_text and "R0lGOD" not in xcom_text
