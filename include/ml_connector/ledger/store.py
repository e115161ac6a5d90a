"""The ledger: exactly-once bookkeeping, audit trail and shared state for every pipeline.

One database behind the ``ml_connector_ledger`` Airflow connection (a SQLite file under the Airflow home by
default, PostgreSQL when several workers run). Every state change is a compare-and-set in one transaction
together with its audit row, so two workers can never both move the same order, and a crash leaves either the
old state or the new one, never half of each.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ml_connector.errors import ConfigurationError, ConnectorError
from ml_connector.ledger import schema
from ml_connector.ledger.schema import (
    LABELLED_STATES,
    TRACKED_STATES,
    TRANSITIONS,
    UNFINISHED_STATES,
    ShipmentState,
)
from ml_connector.models import Order, ShipmentResult, TrackingEvent

DEFAULT_CONN_ID = "ml_connector_ledger"
DEFAULT_SQLITE_NAME = "ml_connector_ledger.db"


class InvalidTransition(ConnectorError):
    """A state change the state machine does not allow (or the row moved under us)."""


@dataclass(frozen=True)
class ShipmentRow:
    """One ERP document in one pipeline, as the ledger knows it."""

    id: int
    pipeline: str
    erp: str
    erp_id: str
    order_number: str
    state: ShipmentState
    reference: str | None = None
    service_code: str | None = None
    residential: bool | None = None
    order_json: dict | None = None
    order_modified_at: str | None = None
    shipment_id: str | None = None
    tracking_numbers: list[str] = field(default_factory=list)
    label_path: str | None = None
    charges: str | None = None
    tracking_status: str | None = None
    delivered_at: str | None = None
    error: str | None = None
    error_step: str | None = None
    attempts: int = 0
    claimed_by: str | None = None
    claim_expires_at: float | None = None
    last_run_id: str | None = None

    @property
    def order(self) -> Order:
        return Order.model_validate(self.order_json)

    @property
    def is_labelled(self) -> bool:
        return self.state in LABELLED_STATES

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> ShipmentRow:
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in row.items() if k in names}
        values["state"] = ShipmentState(values["state"])
        values["tracking_numbers"] = list(values.get("tracking_numbers") or [])
        return cls(**values)


# --------------------------------------------------------------------------------------------------------
# engines: one per database URL per process (engines own connection pools and must not cross a fork)

_ENGINES: dict[tuple[int, str], Engine] = {}
_SCHEMA_READY: set[tuple[int, str]] = set()
_ENGINES_LOCK = threading.Lock()


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every test
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own transaction handling would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised through every test
        # A write transaction takes the database write lock up front: upgrading a read lock later can fail at
        # once with "database is locked" instead of waiting for busy_timeout.
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


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
            _ENGINES[key] = engine
    return engine


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
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # the connection is optional: Airflow raises its own "not defined" error types
        if "isn't defined" in str(exc) or "not defined" in str(exc) or "not found" in str(exc).lower():
            return default_sqlite_url()
        raise
    return url_from_connection(conn)


# --------------------------------------------------------------------------------------------------------


class Ledger:
    """Exactly-once store for one database.

    :param url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg2://...``).
    :param create_schema: create the tables if they do not exist (idempotent, safe under concurrency).
    """

    def __init__(self, url: str | sa.URL, *, create_schema: bool = True) -> None:
        self.url = sa.make_url(url)
        self.engine = get_engine(self.url)
        self.dialect = self.engine.dialect.name
        if create_schema:
            self.ensure_schema()

    @classmethod
    def from_airflow(cls, conn_id: str = DEFAULT_CONN_ID) -> Ledger:
        """Open the ledger behind the Airflow connection ``conn_id`` (default SQLite file if undefined)."""
        return cls(resolve_ledger_url(conn_id))

    def __repr__(self) -> str:
        return f"Ledger({self.url.render_as_string(hide_password=True)!r})"

    # -- transactions -----------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: read committed + row locks)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(immediate=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def ensure_schema(self) -> None:
        key = (os.getpid(), self.url.render_as_string(hide_password=False))
        if key in _SCHEMA_READY:
            return
        with self.write() as conn:
            if self.dialect == "postgresql":
                # concurrent create_all calls race on the catalog; serialise them
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(727271)"))
            schema.metadata.create_all(conn, checkfirst=True)
        _SCHEMA_READY.add(key)

    def _insert(self, table: sa.Table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _lock(self, stmt):
        return stmt.with_for_update() if self.dialect == "postgresql" else stmt

    # -- audit ------------------------------------------------------------------------------------------

    @staticmethod
    def _audit(conn: Connection, *, shipment: ShipmentRow | None, step: str, outcome: str,
               from_state: str | None = None, to_state: str | None = None, message: str | None = None,
               detail: Mapping[str, Any] | None = None, actor: str | None = None,
               pipeline: str | None = None, order_number: str | None = None) -> None:
        conn.execute(schema.audit_log.insert().values(
            shipment_pk=shipment.id if shipment else None,
            pipeline=shipment.pipeline if shipment else pipeline,
            order_number=shipment.order_number if shipment else order_number,
            step=step, outcome=outcome, from_state=from_state, to_state=to_state,
            message=message, detail=_jsonable(detail), actor=actor,
        ))

    def audit(self, shipment: ShipmentRow | None, *, step: str, outcome: str, message: str | None = None,
              detail: Mapping[str, Any] | None = None, actor: str | None = None,
              pipeline: str | None = None) -> None:
        """Append one audit row (the audit log is append-only: nothing updates or deletes it)."""
        with self.write() as conn:
            self._audit(conn, shipment=shipment, step=step, outcome=outcome, message=message, detail=detail,
                        actor=actor, pipeline=pipeline,
                        from_state=shipment.state.value if shipment else None,
                        to_state=shipment.state.value if shipment else None)

    def audit_trail(self, shipment_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(sa.select(schema.audit_log)
                                .where(schema.audit_log.c.shipment_pk == shipment_id)
                                .order_by(schema.audit_log.c.id)).mappings().all()
        return [dict(r) for r in rows]

    # -- shipments --------------------------------------------------------------------------------------

    def _get(self, conn: Connection, shipment_id: int, *, lock: bool = False) -> ShipmentRow:
        stmt = sa.select(schema.shipments).where(schema.shipments.c.id == shipment_id)
        row = conn.execute(self._lock(stmt) if lock else stmt).mappings().first()
        if row is None:
            raise KeyError(f"no ledger row {shipment_id}")
        return ShipmentRow.from_mapping(row)

    def get(self, shipment_id: int) -> ShipmentRow:
        with self.read() as conn:
            return self._get(conn, shipment_id)

    def find(self, pipeline: str, erp_id: str) -> ShipmentRow | None:
        with self.read() as conn:
            row = conn.execute(sa.select(schema.shipments).where(
                schema.shipments.c.pipeline == pipeline, schema.shipments.c.erp_id == erp_id)).mappings().first()
        return ShipmentRow.from_mapping(row) if row else None

    def find_by_number(self, pipeline: str, order_number: str) -> ShipmentRow | None:
        with self.read() as conn:
            row = conn.execute(sa.select(schema.shipments).where(
                schema.shipments.c.pipeline == pipeline,
                schema.shipments.c.order_number == order_number)).mappings().first()
        return ShipmentRow.from_mapping(row) if row else None

    def list(self, pipeline: str, states: Iterable[ShipmentState] | None = None) -> list[ShipmentRow]:
        stmt = sa.select(schema.shipments).where(schema.shipments.c.pipeline == pipeline)
        if states is not None:
            stmt = stmt.where(schema.shipments.c.state.in_([s.value for s in states]))
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(schema.shipments.c.id)).mappings().all()
        return [ShipmentRow.from_mapping(r) for r in rows]

    def unfinished(self, pipeline: str) -> list[ShipmentRow]:
        """Rows an earlier run left unfinished (not labelled yet, or labelled but not written back)."""
        return self.list(pipeline, UNFINISHED_STATES)

    def register_order(self, pipeline: str, order: Order, *, actor: str | None = None) -> tuple[ShipmentRow, bool]:
        """Record an extracted order; returns ``(row, created)``.

        A new document starts in ``extracted``. A document seen before keeps its state; while no label exists
        its stored copy is refreshed (the ERP is the source of truth), and a quarantined one whose ERP document
        changed since is re-opened so that the fix is picked up.
        """
        order_json = order.model_dump(mode="json")
        modified = order.modified_at.isoformat() if order.modified_at else None
        with self.write() as conn:
            result = conn.execute(
                self._insert(schema.shipments).values(
                    pipeline=pipeline, erp=order.erp, erp_id=order.erp_id, order_number=order.number,
                    state=ShipmentState.EXTRACTED.value, order_json=order_json, order_modified_at=modified,
                    last_run_id=actor,
                ).on_conflict_do_nothing(index_elements=["pipeline", "erp_id"])
            )
            created = result.rowcount == 1
            stmt = sa.select(schema.shipments).where(schema.shipments.c.pipeline == pipeline,
                                                     schema.shipments.c.erp_id == order.erp_id)
            row = ShipmentRow.from_mapping(conn.execute(self._lock(stmt)).mappings().one())
            if created:
                self._audit(conn, shipment=row, step="extract_orders", outcome="ok", to_state=row.state.value,
                            message=f"extracted {order.number}", actor=actor)
                return row, True
            values: dict[str, Any] = {}
            if row.state is ShipmentState.QUARANTINED and modified and modified != row.order_modified_at:
                values = dict(state=ShipmentState.EXTRACTED.value, error=None, error_step=None)
                self._audit(conn, shipment=row, step="extract_orders", outcome="reopened",
                            from_state=row.state.value, to_state=ShipmentState.EXTRACTED.value,
                            message=f"{order.number} changed in the ERP since it was quarantined; trying again",
                            actor=actor)
            if not row.is_labelled and row.state is not ShipmentState.LABEL_REQUESTED:
                values.update(order_json=order_json, order_modified_at=modified, order_number=order.number)
            if values:
                values["updated_at"] = sa.func.current_timestamp()
                conn.execute(schema.shipments.update().where(schema.shipments.c.id == row.id).values(**values))
                row = self._get(conn, row.id)
            return row, False

    def register_failure(self, pipeline: str, *, erp: str, erp_id: str, order_number: str,
                         modified_at: str | None, error: BaseException | str, step: str = "extract_orders",
                         actor: str | None = None) -> ShipmentRow:
        """Record an ERP document that could not even be read into an order: it is kept, quarantined with the
        reason, and re-opened once the document changes in the ERP (nothing is silently dropped)."""
        message = str(error)
        with self.write() as conn:
            conn.execute(self._insert(schema.shipments).values(
                pipeline=pipeline, erp=erp, erp_id=erp_id, order_number=order_number,
                state=ShipmentState.QUARANTINED.value, order_modified_at=modified_at, error=message,
                error_step=step, last_run_id=actor,
            ).on_conflict_do_nothing(index_elements=["pipeline", "erp_id"]))
            stmt = sa.select(schema.shipments).where(schema.shipments.c.pipeline == pipeline,
                                                     schema.shipments.c.erp_id == erp_id)
            row = ShipmentRow.from_mapping(conn.execute(self._lock(stmt)).mappings().one())
            if row.state is ShipmentState.QUARANTINED and row.error == message:
                if not any(True for _ in conn.execute(sa.select(schema.audit_log.c.id).where(
                        schema.audit_log.c.shipment_pk == row.id).limit(1))):
                    self._audit(conn, shipment=row, step=step, outcome="quarantined",
                                to_state=row.state.value, message=message, actor=actor)
                return row
            if row.is_labelled:
                self._update(conn, row.id, error=message, error_step=step)
                outcome, to_state = "error", row.state.value
            else:
                self._update(conn, row.id, state=ShipmentState.QUARANTINED.value, error=message,
                             error_step=step, order_modified_at=modified_at)
                outcome, to_state = "quarantined", ShipmentState.QUARANTINED.value
            self._audit(conn, shipment=row, step=step, outcome=outcome, from_state=row.state.value,
                        to_state=to_state, message=message, actor=actor)
            return self._get(conn, row.id)

    def claim(self, shipment_id: int, owner: str, *, ttl_seconds: float = 900) -> bool:
        """Atomically take the row for ``owner`` (conditional update). Exactly one concurrent claimer wins;
        an expired claim (crashed worker) can be taken over."""
        now = time.time()
        t = schema.shipments
        with self.write() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.id == shipment_id)
                .where(sa.or_(t.c.claimed_by.is_(None), t.c.claimed_by == owner, t.c.claim_expires_at < now))
                .values(claimed_by=owner, claim_expires_at=now + ttl_seconds, attempts=t.c.attempts + 1)
            )
        return result.rowcount == 1

    def release(self, shipment_id: int, owner: str) -> None:
        t = schema.shipments
        with self.write() as conn:
            conn.execute(t.update().where(t.c.id == shipment_id, t.c.claimed_by == owner)
                         .values(claimed_by=None, claim_expires_at=None))

    @contextmanager
    def claimed(self, shipment_id: int, owner: str, *, ttl_seconds: float = 900) -> Iterator[bool]:
        """``with ledger.claimed(id, owner) as won:`` — claim, and release on the way out."""
        won = self.claim(shipment_id, owner, ttl_seconds=ttl_seconds)
        try:
            yield won
        finally:
            if won:
                self.release(shipment_id, owner)

    def transition(self, shipment_id: int, to_state: ShipmentState, *, step: str, message: str | None = None,
                   detail: Mapping[str, Any] | None = None, actor: str | None = None,
                   expect: Iterable[ShipmentState] | None = None, **fields: Any) -> ShipmentRow:
        """Move a row to ``to_state`` (compare-and-set) and append the audit row in the same transaction.

        :param expect: states the row must be in; defaults to every state that may move to ``to_state``.
        :param fields: other columns to set (``service_code``, ``error``...).
        """
        with self.write() as conn:
            row = self._get(conn, shipment_id, lock=True)
            allowed = set(expect) if expect is not None else {s for s, nxt in TRANSITIONS.items() if to_state in nxt}
            allowed.add(to_state)  # re-entering the same state is an idempotent no-op move
            if row.state not in allowed:
                raise InvalidTransition(
                    f"order {row.order_number}: cannot move from '{row.state.value}' to '{to_state.value}' ({step})"
                )
            self._update(conn, row.id, state=to_state.value, **fields)
            self._audit(conn, shipment=row, step=step, outcome="ok", from_state=row.state.value,
                        to_state=to_state.value, message=message, detail=detail, actor=actor)
            return self._get(conn, row.id)

    def _update(self, conn: Connection, row_id: int, /, **values: Any) -> None:
        values["updated_at"] = sa.func.current_timestamp()
        conn.execute(schema.shipments.update().where(schema.shipments.c.id == row_id).values(**values))

    def quarantine(self, shipment_id: int, *, step: str, error: BaseException | str,
                   actor: str | None = None) -> ShipmentRow:
        """Park a row whose data is wrong, with the reason; it is re-opened when the ERP document changes."""
        message = str(error)
        with self.write() as conn:
            row = self._get(conn, shipment_id, lock=True)
            if row.is_labelled:
                # a label exists: never hide it behind 'quarantined'; keep the state and record the error
                self._update(conn, row.id, error=message, error_step=step)
                self._audit(conn, shipment=row, step=step, outcome="error", from_state=row.state.value,
                            to_state=row.state.value, message=message, actor=actor)
            else:
                self._update(conn, row.id, state=ShipmentState.QUARANTINED.value, error=message, error_step=step)
                self._audit(conn, shipment=row, step=step, outcome="quarantined", from_state=row.state.value,
                            to_state=ShipmentState.QUARANTINED.value, message=message, actor=actor)
            return self._get(conn, row.id)

    def record_error(self, shipment_id: int, *, step: str, error: BaseException | str,
                     actor: str | None = None) -> ShipmentRow:
        """Record a transient failure (state unchanged) so that the grid and the ledger say the same thing."""
        message = str(error)
        with self.write() as conn:
            row = self._get(conn, shipment_id, lock=True)
            self._update(conn, row.id, error=message, error_step=step)
            self._audit(conn, shipment=row, step=step, outcome="error", from_state=row.state.value,
                        to_state=row.state.value, message=message, actor=actor)
            return self._get(conn, row.id)

    def record_label(self, shipment_id: int, result: ShipmentResult, *, label_paths: Mapping[str, str],
                     actor: str | None = None, adopted: bool = False) -> ShipmentRow:
        """Persist a bought (or adopted) label: tracking numbers, label paths and state ``labelled`` in one
        transaction, so that no retry can ever buy a second one."""
        with self.write() as conn:
            row = self._get(conn, shipment_id, lock=True)
            if row.is_labelled:
                return row
            if row.state is not ShipmentState.LABEL_REQUESTED:
                raise InvalidTransition(f"order {row.order_number}: label recorded while '{row.state.value}'")
            charges = result.charges
            self._update(
                conn, row.id, state=ShipmentState.LABELLED.value, shipment_id=result.shipment_id,
                tracking_numbers=list(result.tracking_numbers),
                label_path=label_paths.get(result.tracking_numbers[0]) if result.tracking_numbers else None,
                charges=f"{charges.amount} {charges.currency}" if charges else None,
                error=None, error_step=None,
            )
            for seq, number in enumerate(result.tracking_numbers, start=1):
                conn.execute(self._insert(schema.packages).values(
                    shipment_pk=row.id, seq=seq, tracking_number=number, label_path=label_paths.get(number),
                    status="label_created",
                ).on_conflict_do_nothing(index_elements=["tracking_number"]))
            self._audit(conn, shipment=row, step="create_shipment", outcome="adopted" if adopted else "ok",
                        from_state=row.state.value, to_state=ShipmentState.LABELLED.value,
                        message=("adopted the label of an earlier attempt " if adopted else "label created ")
                        + ", ".join(result.tracking_numbers),
                        detail={"shipment_id": result.shipment_id,
                                "charges": f"{charges.amount} {charges.currency}" if charges else None,
                                "warnings": list(result.warnings)},
                        actor=actor)
            return self._get(conn, row.id)

    # -- tracking ---------------------------------------------------------------------------------------

    def tracked(self, pipeline: str) -> list[ShipmentRow]:
        """Rows whose packages are still moving (labelled, written back, in transit, exception)."""
        return self.list(pipeline, TRACKED_STATES)

    def add_tracking_events(self, events: Iterable[TrackingEvent], *, source: str) -> list[TrackingEvent]:
        """Store events, dropping ones already stored; returns the new ones."""
        new: list[TrackingEvent] = []
        with self.write() as conn:
            for event in events:
                key = f"{event.tracking_number}|{event.occurred_at.isoformat()}|{event.code or event.status.value}"
                result = conn.execute(self._insert(schema.tracking_events).values(
                    tracking_number=event.tracking_number, dedupe_key=key[:200], status=event.status.value,
                    code=event.code, description=event.description, occurred_at=event.occurred_at.isoformat(),
                    location=event.location, source=source,
                ).on_conflict_do_nothing(index_elements=["dedupe_key"]))
                if result.rowcount == 1:
                    new.append(event)
        return new

    def tracking_events(self, tracking_number: str) -> list[dict[str, Any]]:
        t = schema.tracking_events
        with self.read() as conn:
            rows = conn.execute(sa.select(t).where(t.c.tracking_number == tracking_number)
                                .order_by(t.c.occurred_at.desc())).mappings().all()
        return [dict(r) for r in rows]

    def set_package_status(self, tracking_number: str, status: str, delivered_at: str | None = None) -> None:
        t = schema.packages
        with self.write() as conn:
            conn.execute(t.update().where(t.c.tracking_number == tracking_number)
                         .values(status=status, delivered_at=delivered_at))

    # -- Track Alert subscriptions ------------------------------------------------------------------------

    def subscriptions_due(self, tracking_numbers: Iterable[str], *, now: float | None = None,
                          renew_before_seconds: float = 2 * 86400) -> list[str]:
        """Tracking numbers with no subscription, or one that expires within ``renew_before_seconds``."""
        now = time.time() if now is None else now
        numbers = list(tracking_numbers)
        t = schema.track_alert_subscriptions
        with self.read() as conn:
            rows = conn.execute(sa.select(t.c.tracking_number, t.c.expires_at)
                                .where(t.c.tracking_number.in_(numbers))).all()
        fresh = {n for n, exp in rows if exp - renew_before_seconds > now}
        return [n for n in numbers if n not in fresh]

    def record_subscriptions(self, tracking_numbers: Iterable[str], *, pipeline: str, expires_at: float,
                             status: str = "active") -> None:
        t = schema.track_alert_subscriptions
        now = time.time()
        with self.write() as conn:
            for number in tracking_numbers:
                stmt = self._insert(t).values(tracking_number=number, pipeline=pipeline, subscribed_at=now,
                                              expires_at=expires_at, status=status)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["tracking_number"],
                    set_={"subscribed_at": now, "expires_at": expires_at, "status": status}))

    # -- webhook inbox ----------------------------------------------------------------------------------

    def inbox_put(self, source: str, payload: str | Mapping[str, Any], *, dedupe_key: str | None = None) -> bool:
        """Store an inbound webhook body; returns False for a duplicate delivery."""
        body = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
        with self.write() as conn:
            result = conn.execute(self._insert(schema.webhook_inbox).values(
                source=source, payload=body, dedupe_key=dedupe_key,
            ).on_conflict_do_nothing(index_elements=["dedupe_key"]))
        return result.rowcount == 1

    def inbox_pending(self, source: str, *, limit: int = 500) -> list[dict[str, Any]]:
        t = schema.webhook_inbox
        with self.read() as conn:
            rows = conn.execute(sa.select(t).where(t.c.source == source, t.c.processed_at.is_(None))
                                .order_by(t.c.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def inbox_done(self, inbox_id: int, *, error: str | None = None) -> None:
        t = schema.webhook_inbox
        with self.write() as conn:
            conn.execute(t.update().where(t.c.id == inbox_id)
                         .values(processed_at=sa.func.current_timestamp(), error=error))


def _jsonable(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if detail is None:
        return None
    return json.loads(json.dumps(detail, default=str))
