"""Ledger migrations on SQLite and PostgreSQL: a release 0.1.0 ledger is upgraded without losing a row, a new
one is built by the revisions, the result is what schema.py describes, and concurrent first uses are safe."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from tests.ledger import release_0_1_schema as release_0_1

from ml_connector import cli
from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger, ShipmentState, engine, migrations, schema
from ml_connector.models import Address, Order, Package
from ml_connector.secrets import SecretStore, load_fernet

HEAD = migrations.head_revision()


def _plain_engine(url: str) -> sa.Engine:
    """An engine of its own, outside the ledger's per-process cache (what release 0.1.0 would have used)."""
    return sa.create_engine(url, poolclass=sa.NullPool)


def _context(conn: sa.Connection) -> MigrationContext:
    return MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE,
                                                  "compare_type": True, "compare_server_default": True})


def _schema_diffs(url: str) -> list:
    eng = _plain_engine(url)
    try:
        with eng.connect() as conn:
            diffs = compare_metadata(_context(conn), schema.metadata)
    finally:
        eng.dispose()
    return diffs


def _tables(url: str) -> set[str]:
    eng = _plain_engine(url)
    try:
        with eng.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        eng.dispose()


def _make_release_0_1_ledger(url: str, fernet_key: str) -> dict[str, int]:
    """Tables of release 0.1.0 with one row in each table the pipelines care about."""
    eng = _plain_engine(url)
    try:
        with eng.begin() as conn:
            release_0_1.metadata.create_all(conn)
            shipment_pk = conn.execute(release_0_1.shipments.insert().values(
                pipeline="bc_ups", erp="business_central", erp_id="guid-1", order_number="SO-1001",
                state="labelled", order_json={"number": "SO-1001"}, tracking_numbers=["1ZA1B2C30312345678"],
                charges="12.34 USD",
            )).inserted_primary_key[0]
            conn.execute(release_0_1.packages.insert().values(
                shipment_pk=shipment_pk, seq=1, tracking_number="1ZA1B2C30312345678", status="label_created"))
            conn.execute(release_0_1.audit_log.insert().values(
                shipment_pk=shipment_pk, pipeline="bc_ups", order_number="SO-1001", step="create_shipment",
                outcome="ok", from_state="label_requested", to_state="labelled", detail={"charges": "12.34 USD"}))
            token = Fernet(fernet_key.encode()).encrypt(b"cached-token").decode()
            conn.execute(release_0_1.secrets.insert().values(name="ups:token", ciphertext=token,
                                                             expires_at=time.time() + 3600))
    finally:
        eng.dispose()
    return {"shipment": shipment_pk}


def test_release_0_1_ledger_is_stamped_and_upgraded_without_losing_rows(ledger_url: str, caplog):
    key = Fernet.generate_key().decode()
    ids = _make_release_0_1_ledger(ledger_url, key)
    assert migrations.VERSION_TABLE not in _tables(ledger_url)

    with caplog.at_level(logging.INFO, logger="ml_connector.ledger.engine"):
        ledger = Ledger(ledger_url)
    assert ledger.current_revision() == HEAD
    assert f"stamped {migrations.BASELINE}" in caplog.text
    assert f"upgraded the schema from {migrations.BASELINE} to {HEAD}" in caplog.text

    row = ledger.get(ids["shipment"])
    assert (row.order_number, row.state, row.tracking_numbers) == ("SO-1001", ShipmentState.LABELLED,
                                                                   ["1ZA1B2C30312345678"])
    assert [(a["step"], a["outcome"], a["detail"]) for a in ledger.audit_trail(row.id)] == [
        ("create_shipment", "ok", {"charges": "12.34 USD"})]
    with ledger.read() as conn:
        packages = conn.execute(sa.select(schema.packages.c.tracking_number, schema.packages.c.status)).all()
    assert [tuple(p) for p in packages] == [("1ZA1B2C30312345678", "label_created")]
    store = SecretStore(ledger, load_fernet(key))
    assert store.get("ups:token").value == "cached-token"
    secret = ledger.secret("ups:token")
    assert (secret.lease_owner, secret.lease_expires_at, secret.refused_until) == (None, None, None)

    # the upgraded ledger works as a new one does
    order = Order(erp="business_central", erp_id="guid-2", number="SO-1002", ship_method="GROUND",
                  ship_to=Address(name="Receiver", lines=["1 Main St"], city="New York", state="NY",
                                  postal_code="10001", country="US"),
                  packages=[Package(weight=Decimal("1"))], modified_at=datetime.fromisoformat("2026-01-01T00:00Z"))
    new, created = ledger.register_order("bc_ups", order)
    assert created and new.id != row.id
    assert store.get_or_refresh("ups:token", lambda cur: pytest.fail("the cached token is fresh")) == "cached-token"
    assert _schema_diffs(ledger_url) == []


def test_new_ledger_is_built_by_the_revisions_and_matches_schema_py(ledger_url: str):
    ledger = Ledger(ledger_url)
    assert ledger.current_revision() == HEAD
    tables = _tables(ledger_url)
    assert set(schema.metadata.tables) | {migrations.VERSION_TABLE} == tables
    assert "alembic_version" not in tables  # that name belongs to Airflow's metadata database
    assert _schema_diffs(ledger_url) == []


def test_revision_0001_is_release_0_1_schema(ledger_url: str):
    """0001 builds exactly what release 0.1.0's create_all built (so stamping such a ledger 0001 is right)."""
    eng = _plain_engine(ledger_url)
    try:
        with eng.begin() as conn:
            migrations.upgrade(conn, migrations.BASELINE)
        with eng.connect() as conn:
            diffs = compare_metadata(_context(conn), release_0_1.metadata)
    finally:
        eng.dispose()
    assert diffs == []


def test_a_ledger_at_head_costs_one_read(ledger_url: str, monkeypatch):
    Ledger(ledger_url)
    engine._SCHEMA_READY.clear()  # as in a new process

    def must_not_migrate(_engine):
        raise AssertionError("a ledger at head must not take the migration lock")

    monkeypatch.setattr(engine, "upgrade_schema", must_not_migrate)
    statements: list[str] = []
    ledger_engine = engine.get_engine(ledger_url)
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    sa.event.listen(ledger_engine, "before_cursor_execute", listener)
    try:
        Ledger(ledger_url)
        Ledger(ledger_url)  # known to be at head in this process: no statement at all
    finally:
        sa.event.remove(ledger_engine, "before_cursor_execute", listener)
    assert any(migrations.VERSION_TABLE in s for s in statements)
    assert not any(s.lstrip().upper().startswith(("CREATE", "ALTER", "INSERT", "UPDATE")) for s in statements)


def test_ledger_shares_a_database_with_airflow_alembic_history(ledger_url: str):
    """Airflow's metadata keeps its own revision in alembic_version; the ledger leaves it alone."""
    eng = _plain_engine(ledger_url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('cc92b33c6709')"))
        ledger = Ledger(ledger_url)
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
                "cc92b33c6709"]
    finally:
        eng.dispose()
    assert ledger.current_revision() == HEAD


class _UpgradeRecorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.upgrades = 0

    def emit(self, record):
        if "upgraded the schema" in record.getMessage():
            self.upgrades += 1


def _open_in_process(url: str, barrier, results) -> None:
    recorder = _UpgradeRecorder()
    log = logging.getLogger("ml_connector.ledger.engine")
    log.addHandler(recorder)
    log.setLevel(logging.INFO)
    try:
        barrier.wait()
        ledger = Ledger(url)
        results.put(("ok", ledger.current_revision(), recorder.upgrades))
    except Exception as exc:  # report, do not hang the parent
        results.put(("error", repr(exc), 0))


def test_processes_opening_a_new_ledger_at_once_all_succeed(ledger_url: str):
    ctx = mp.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n, timeout=60), ctx.Queue()
    procs = [ctx.Process(target=_open_in_process, args=(ledger_url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [(status, revision) for status, revision, _ in outcomes] == [("ok", HEAD)] * n
    assert sum(upgrades for _, _, upgrades in outcomes) == 1  # one migrated, the others found it done
    assert _schema_diffs(ledger_url) == []


def test_cli_db_current_and_upgrade(ledger_url: str, capsys):
    _make_release_0_1_ledger(ledger_url, Fernet.generate_key().decode())
    assert cli.main(["db", "current", "--ledger-url", ledger_url]) == 0
    assert "tables of release 0.1.0 without a version" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "--ledger-url", ledger_url]) == 0
    assert f"upgraded from {migrations.BASELINE} to {HEAD} (head)" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "--ledger-url", ledger_url]) == 0
    assert f"already at {HEAD} (head)" in capsys.readouterr().out
    assert cli.main(["db", "current", "--ledger-url", ledger_url]) == 0
    assert f"{HEAD} (head)" in capsys.readouterr().out


def test_cli_db_current_on_an_empty_database(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert cli.main(["db", "current", "--ledger-url", url]) == 0
    assert "no ledger tables yet" in capsys.readouterr().out


def test_a_ledger_migrated_by_a_newer_release_is_used_as_it_is(ledger_url: str, caplog, capsys):
    Ledger(ledger_url)
    eng = _plain_engine(ledger_url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    finally:
        eng.dispose()
    engine._SCHEMA_READY.clear()  # as in a new process
    with caplog.at_level(logging.WARNING, logger="ml_connector.ledger.engine"):
        ledger = Ledger(ledger_url)
    assert "schema revision 9999, which this ml-connector (head" in caplog.text
    assert ledger.inbox_put("webhook", {"a": 1})
    assert cli.main(["db", "current", "--ledger-url", ledger_url]) == 0
    assert f"9999, newer than this release's head {HEAD}" in capsys.readouterr().out
    with pytest.raises(ConfigurationError, match="a newer release migrated it"):
        cli.main(["db", "upgrade", "--ledger-url", ledger_url])
