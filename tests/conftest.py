"""Test environment: a private AIRFLOW_HOME, a Fernet key, and the ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix=f"ml-connector-airflow-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"))
# Before anything imports Airflow: its settings are read at import time. Every test process (each xdist worker)
# gets its own Airflow home and metadata DB: tests reset that DB, so it must never be a user's or another
# worker's.
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("ML_CONNECTOR_FERNET_KEYS", "lX5C3uTj1gQq2tqQnG3Yd5wq0J0nKkq8s4c2W6h3l7U=")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

def stop_group(proc: subprocess.Popen) -> None:
    """Stop a server a test started: SIGTERM the process group we started (by its id, never by name), SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def at_once_in_processes(n: int, target, *args) -> list[str]:
    """Fork ``n`` processes running ``target(*args, barrier, errors)`` (each waits on ``barrier`` before the
    step that must happen at the same moment and puts what went wrong into ``errors``); wait for them and return
    their errors, plus one line per process that did not exit cleanly."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(n, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, errors)) for _ in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=180)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    return failures + [f"process exited with {p.exitcode}" for p in procs if p.exitcode != 0]


PG_BASE = os.environ.get("ML_CONNECTOR_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


def make_pg_url(schema: str) -> str:
    """A URL whose search_path is a private schema, so tests (and xdist workers) never share tables."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


def drop_pg_schema(schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path, pg_available):
    """Every ledger test runs on a fresh SQLite file and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    if not pg_available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_BASE}; CI must run the PostgreSQL ledger tests")
        pytest.skip("PostgreSQL is not reachable")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = make_pg_url(schema)
    yield url
    import sqlalchemy as sa

    from ml_connector.ledger import store

    rendered = sa.make_url(url).render_as_string(hide_password=False)
    for key in [k for k in store._ENGINES if k[1] == rendered]:
        store._ENGINES.pop(key).dispose()
    drop_pg_schema(schema)


@pytest.fixture
def ledger(ledger_url):
    from ml_connector.ledger import Ledger

    return Ledger(ledger_url)


# -- sandboxes: real HTTP servers on free loopback ports, one process per test session (per xdist worker) ------

@pytest.fixture(scope="session")
def sandbox():
    """UPS and Business Central sandboxes served by one ``python -m ml_connector_sandbox`` process."""
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["ups", "business_central"]) as server:
        yield server


@pytest.fixture(scope="session")
def ups_sandbox(sandbox):
    return sandbox


@pytest.fixture
def ups(sandbox):
    """The session's sandbox with the UPS state, counters and knobs reset for this test."""
    sandbox.reset("ups")
    return sandbox


@pytest.fixture
def sqlite_ledger(tmp_path):
    from ml_connector.ledger import Ledger

    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


UPS_ACCOUNT = "A1B2C3"


def ups_connection(url: str, **extra) -> str:
    """``ups_default`` as JSON: the sandbox at ``url`` with the only credentials it accepts (any other password
    exercises a refusal)."""
    import json

    from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET

    return json.dumps({"conn_type": "ups", "host": url, "login": UPS_CLIENT_ID, "password": UPS_CLIENT_SECRET,
                       "extra": {"account_number": UPS_ACCOUNT, **extra}})


@pytest.fixture
def ups_conn(ups, monkeypatch):
    """``ups_default`` pointing at the sandbox (only the host differs from production)."""
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(ups.url("ups")))
    return ups
