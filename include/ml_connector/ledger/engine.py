"""Where the ledger lives and how it is opened: URLs, engines, transactions and schema migration.

One database behind the ``ml_connector_ledger`` Airflow connection (a SQLite file under the Airflow home by
default, PostgreSQL when several workers run). Each process keeps one engine per URL (engines own connection
pools and must not cross a fork). The first time a process opens a URL, the schema is brought to the newest
Alembic revision under a lock; a ledger that is already there costs one cheap check.

:class:`LedgerBase` holds what every part of the ledger shares: the engine, :meth:`~LedgerBase.read` and
:meth:`~LedgerBase.write` transactions, and the dialect-specific ``INSERT ... ON CONFLICT`` and row locks.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ml_connector.errors import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "ml_connector_ledger"
DEFAULT_SQLITE_NAME = "ml_connector_ledger.db"

# --------------------------------------------------------------------------------------------------------
# engines: one per database URL per process

_ENGINES: dict[tuple[int, str], Engine] = {}
#: (pid, URL) pairs whose schema this process has found (or brought) at the head revision.
_SCHEMA_READY: set[tuple[int, str]] = set()
_ENGINES_LOCK = threading.Lock()
#: First key of the PostgreSQL advisory lock that serialises migrations (the second is the schema's hash).
_MIGRATION_LOCK_CLASS = 727271


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every test
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own transaction handling would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        _sqlite_locked_retry(cur.execute, "PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised through every test
        # A write transaction takes the database write lock up front: upgrading a read lock later can fail at
        # once with "database is locked" instead of waiting for busy_timeout.
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _is_sqlite_locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc) and isinstance(exc, (sa.exc.OperationalError, sqlite3.OperationalError))


#: SQLite answers "database is locked" at once, without waiting for its busy timeout, in a few documented
#: moments (switching a new file to WAL, the last connection of a WAL database cleaning up while another
#: opens it). Such a step is retried briefly; only idempotent steps go through this.
_sqlite_locked_retry = tenacity.Retrying(
    retry=tenacity.retry_if_exception(_is_sqlite_locked),
    wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
    stop=tenacity.stop_after_attempt(20), reraise=True,
)


def get_engine(url: str | sa.URL) -> Engine:
    """The process-wide engine for ``url`` (SQLite gets WAL, a busy timeout and write-locking transactions)."""
    url = sa.make_url(url)
    key = (os.getpid(), url.render_as_string(hide_password=False))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if url.get_backend_name() == "sqlite":
                engine = _sqlite_engine(url)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
            _count_commits(engine)
            _ENGINES[key] = engine
    return engine


#: ``make bench`` counts ledger transactions: with this variable set, every commit appends one byte to that file
#: (``w`` for a write transaction, ``r`` for a read).
COMMIT_LOG_ENV = "ML_CONNECTOR_LEDGER_COMMIT_LOG"


def _count_commits(engine: Engine) -> None:
    path = os.environ.get(COMMIT_LOG_ENV)
    if not path:
        return

    @sa.event.listens_for(engine, "commit")
    def _on_commit(conn):  # pragma: no cover - bench only
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"w" if conn.get_execution_options().get("immediate") else b"r")
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------------------
# which database: the Airflow connection, or a SQLite file under the Airflow home


def default_sqlite_url() -> str:
    """``sqlite:///$AIRFLOW_HOME/ml_connector_ledger.db`` (``~/airflow`` when AIRFLOW_HOME is unset)."""
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return f"sqlite:///{home / DEFAULT_SQLITE_NAME}"


def url_from_connection(conn) -> str:
    """Build a SQLAlchemy URL from an Airflow connection.

    ``conn_type`` ``sqlite``: ``host`` is the file path. ``postgres``/``postgresql``: the usual fields,
    ``schema`` is the database. An extra ``sqlalchemy_url`` overrides everything.
    """
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        if not path:
            return default_sqlite_url()
        return f"sqlite:///{path}"
    if conn_type in ("postgres", "postgresql"):
        return sa.URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or "127.0.0.1",
            port=conn.port or 5432,
            database=conn.schema or "postgres",
        ).render_as_string(hide_password=False)
    raise ConfigurationError(
        f"connection '{conn.conn_id}': conn_type '{conn.conn_type}' is not supported for the ledger; "
        "use 'sqlite' (host = file path) or 'postgres'"
    )


def resolve_ledger_url(conn_id: str = DEFAULT_CONN_ID) -> str:
    """The ledger URL from the Airflow connection ``conn_id``, or the default SQLite file when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:  # the connection is optional
        return default_sqlite_url()
    return url_from_connection(conn)


# --------------------------------------------------------------------------------------------------------
# migrations on first use


def _redacted(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _newer_message(url: sa.URL, current: str, head: str) -> str:
    return (f"ledger {_redacted(url)} is at schema revision {current}, which this ml-connector (head {head}) "
            "does not know: a newer release migrated it. Install that release here too.")


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Bring the ledger behind ``engine`` to the head revision, under a lock; returns ``(from, to)``.

    The lock is ``pg_advisory_xact_lock`` on PostgreSQL (keyed by the schema, so ledgers in other schemas of
    the same database do not wait) and a ``BEGIN IMMEDIATE`` write transaction on SQLite. The revision is read
    again once the lock is held, so of several processes opening a new ledger at once, one migrates and the
    others find it done. A ledger created by release 0.1.0 (its tables, no version table) is stamped 0001
    first. Everything runs in one transaction: PostgreSQL and SQLite both roll DDL back on failure.
    """
    from ml_connector.ledger import migrations  # Alembic: only when a ledger is opened, never at DAG parse

    head = migrations.head_revision()
    with engine.connect() as conn:
        conn = conn.execution_options(immediate=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                schema_name = conn.execute(sa.text("SELECT current_schema()")).scalar() or ""
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:a, :b)"),
                             {"a": _MIGRATION_LOCK_CLASS, "b": zlib.crc32(schema_name.encode()) - 2**31})
            current = migrations.current_revision(conn)
            if current == head:
                return current, head
            if current is not None and not migrations.is_known(current):
                raise ConfigurationError(_newer_message(engine.url, current, head))
            if current is None and migrations.has_unversioned_tables(conn):
                migrations.stamp(conn, migrations.BASELINE)
                current = migrations.BASELINE
                log.info("ledger %s: tables without a version table (release 0.1.0): stamped %s",
                         _redacted(engine.url), current)
            migrations.upgrade(conn, head)
    log.info("ledger %s: upgraded the schema from %s to %s", _redacted(engine.url), current or "nothing", head)
    return current, head


# --------------------------------------------------------------------------------------------------------


T = TypeVar("T")


class _Work:
    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[Connection], Any]) -> None:
        self.work = work
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _GroupCommit:
    """Leader/follower group commit for one database in one process (see :meth:`LedgerBase.write_grouped`).

    The first thread that finds no transaction running leads: it takes everything queued, runs it in one
    transaction (a savepoint each), commits, hands out the results, and goes on while more is queued; the others
    wait for their result. No thread of its own; nothing waits for a timer."""

    def __init__(self, ledger: LedgerBase, durable: bool = True) -> None:
        self.ledger = ledger
        self.durable = durable
        self.lock = threading.Lock()
        self.queue: list[_Work] = []
        self.running = False

    def submit(self, work: Callable[[Connection], T]) -> T:
        item = _Work(work)
        with self.lock:
            self.queue.append(item)
            lead = not self.running
            self.running = lead or self.running
        if lead:
            self._lead()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def _lead(self) -> None:
        while True:
            with self.lock:
                batch, self.queue = self.queue, []
                if not batch:
                    self.running = False
                    return
            try:
                with self.ledger.write(durable=self.durable) as conn:
                    for item in batch:
                        try:
                            with conn.begin_nested():
                                item.result = item.work(conn)
                        except Exception as exc:  # rolled back to its savepoint; raised in its own thread
                            item.error = exc
            except BaseException as exc:  # the commit itself failed: nothing of the batch is written
                for item in batch:
                    item.result, item.error = None, item.error or exc
                if not isinstance(exc, Exception):
                    for item in batch:
                        item.done.set()
                    with self.lock:
                        self.running = False
                    raise
            for item in batch:
                item.done.set()


_GROUPS: dict[tuple[int, str, bool], _GroupCommit] = {}


def _group_for(ledger: LedgerBase, durable: bool = True) -> _GroupCommit:
    key = (os.getpid(), ledger.url.render_as_string(hide_password=False), durable)
    with _ENGINES_LOCK:
        group = _GROUPS.get(key)
        if group is None:
            group = _GROUPS[key] = _GroupCommit(ledger, durable)
    return group


class LedgerBase:
    """What every part of the ledger shares: one database, its engine and its transactions.

    :param url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg2://...``).
    :param create_schema: bring the schema to the newest revision on first use of ``url`` in this process
        (idempotent, safe when several processes open the same ledger at once).
    """

    def __init__(self, url: str | sa.URL, *, create_schema: bool = True) -> None:
        self.url = sa.make_url(url)
        self.engine = get_engine(self.url)
        self.dialect = self.engine.dialect.name
        if create_schema:
            self.ensure_schema()

    @classmethod
    def from_airflow(cls, conn_id: str = DEFAULT_CONN_ID) -> Self:
        """Open the ledger behind the Airflow connection ``conn_id`` (default SQLite file if undefined)."""
        return cls(resolve_ledger_url(conn_id))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_redacted(self.url)!r})"

    # -- transactions -----------------------------------------------------------------------------------

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: read committed + row locks).

        :param durable: the commit must survive a power loss before this returns (SQLite: ``synchronous=FULL``,
            an fsync of the write-ahead log per commit; the default). ``False`` is for writes that are simply
            redone when lost (an extract, an address check, a write-back mark, a claim): SQLite then commits
            without an fsync (``synchronous=NORMAL``, still safe against a crash of the process), and the next
            durable commit makes it durable with everything before it (the log is sequential). PostgreSQL
            commits are always durable.
        """
        relaxed = self.dialect == "sqlite" and not durable
        with self.engine.connect() as conn:
            if relaxed:
                conn.connection.dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            try:
                conn = conn.execution_options(immediate=True)
                with conn.begin():
                    yield conn
            finally:
                if relaxed:  # pooled connections go back durable (SQLite's WAL default here is FULL)
                    conn.connection.dbapi_connection.execute("PRAGMA synchronous=FULL")

    def write_grouped(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """Run ``work(conn)`` in a durable write transaction, possibly together with the same calls of other
        threads of this process (group commit): on SQLite, threads that write at the same moment share one
        transaction and one fsync instead of queueing for the write lock one fsync each. When this returns,
        ``work``'s changes are committed and durable, exactly as with :meth:`write`.

        Each ``work`` runs in its own savepoint: one that raises is rolled back alone and its exception is raised
        in its own thread; the others commit. ``work`` must touch only its own rows (it runs in one transaction
        with others' work). PostgreSQL (row locks, no single writer): every call is its own transaction.

        :param durable: as for :meth:`write` (``False``: no fsync; the group still saves lock hand-overs).
        """
        if self.dialect != "sqlite":
            with self.write() as conn:
                return work(conn)
        return _group_for(self, durable).submit(work)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # -- schema -----------------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Migrate to the head revision unless this process already found the ledger there.

        The check reads the version table without a lock; only a ledger that is behind takes the migration
        lock (see :func:`upgrade_schema`). A ledger that a newer release already migrated further is used as
        it is, with a warning (during a rolling upgrade, tasks of the older release still run).
        """
        key = (os.getpid(), self.url.render_as_string(hide_password=False))
        if key in _SCHEMA_READY:
            return
        _sqlite_locked_retry(self._ensure_schema)
        _SCHEMA_READY.add(key)

    def _ensure_schema(self) -> None:
        from ml_connector.ledger import migrations

        current, head = self.current_revision(), migrations.head_revision()
        if current is not None and current != head and not migrations.is_known(current):
            log.warning("%s", _newer_message(self.url, current, head))
        elif current != head:
            upgrade_schema(self.engine)

    def current_revision(self) -> str | None:
        """The schema revision recorded in the ledger (``None``: no version table yet)."""
        from ml_connector.ledger import migrations

        with self.read() as conn:
            return migrations.current_revision(conn)

    # -- statements -------------------------------------------------------------------------------------

    def _insert(self, table: sa.Table):
        """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` for this dialect."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _lock(self, stmt):
        """``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write transaction already excludes other writers."""
        return stmt.with_for_update() if self.dialect == "postgresql" else stmt
