"""Shipments: one row per ERP document per pipeline, moved through the state machine exactly once.

Every state change is a compare-and-set in one transaction together with its audit row, so two workers can
never both move the same order, and a crash leaves either the old state or the new one, never half of each.
A worker claims a row (:meth:`ShipmentsMixin.claim`) before calling out for it; an expired claim can be taken
over.

A row that ever reached ``label_requested`` keeps ``label_requested_at`` for life. A ``label_uncertain`` row (a
purchase whose outcome is unknown) is never quarantined, and no row with a purchase open (``label_requested``,
``label_uncertain``) is quarantined because its ERP document became unreadable: the error is recorded and the
state stays, so a label that may exist is never hidden. (A ``label_requested`` row is quarantined only when the
carrier refused the order, which means no label exists.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ml_connector.errors import ConnectorError
from ml_connector.ledger import schema
from ml_connector.ledger.audit import AuditMixin
from ml_connector.ledger.schema import (
    LABELLED_STATES,
    PURCHASE_OPEN_STATES,
    TRACKED_STATES,
    TRANSITIONS,
    UNFINISHED_STATES,
    ShipmentState,
)
from ml_connector.models import Order, ShipmentResult


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
    label_requested_at: datetime | None = None
    uncertain_since: float | None = None
    lookup_attempts: int = 0
    next_lookup_at: float | None = None
    lookup_until: float | None = None
    rebuy_at: float | None = None

    @property
    def order(self) -> Order:
        return Order.model_validate(self.order_json)

    @property
    def is_labelled(self) -> bool:
        return self.state in LABELLED_STATES

    @property
    def purchase_attempted(self) -> bool:
        """A label purchase was attempted for this order at some time (kept for life): any later purchase
        looks the order up by reference first."""
        return self.label_requested_at is not None

    @property
    def is_uncertain(self) -> bool:
        """A purchase whose outcome is unknown: a label may exist; nothing is bought until it is resolved."""
        return self.state is ShipmentState.LABEL_UNCERTAIN

    @property
    def needs_decision(self) -> bool:
        """Uncertain, and the settle window is over: no automatic lookup is pending, a person decides."""
        return self.is_uncertain and self.next_lookup_at is None

    def lookup_due(self, now: float) -> bool:
        """A lookup by reference is pending and due at ``now`` (epoch seconds)."""
        return self.next_lookup_at is not None and self.next_lookup_at <= now

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> ShipmentRow:
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in row.items() if k in names}
        values["state"] = ShipmentState(values["state"])
        values["tracking_numbers"] = list(values.get("tracking_numbers") or [])
        return cls(**values)


class ShipmentsMixin(AuditMixin):
    """Rows of ``ml_shipments`` and ``ml_packages``, with their audit rows."""

    def _get(self, conn: Connection, shipment_id: int, *, lock: bool = False) -> ShipmentRow:
        stmt = sa.select(schema.shipments).where(schema.shipments.c.id == shipment_id)
        row = conn.execute(self._lock(stmt) if lock else stmt).mappings().first()
        if row is None:
            raise KeyError(f"no ledger row {shipment_id}")
        return ShipmentRow.from_mapping(row)

    def get(self, shipment_id: int) -> ShipmentRow:
        with self.read() as conn:
            return self._get(conn, shipment_id)

    def get_many(self, shipment_ids: Iterable[int]) -> list[ShipmentRow]:
        """Rows by id, in the order asked, in one read (a missing id raises ``KeyError``)."""
        ids = list(shipment_ids)
        found: dict[int, ShipmentRow] = {}
        with self.read() as conn:
            for start in range(0, len(ids), 500):
                stmt = sa.select(schema.shipments).where(schema.shipments.c.id.in_(ids[start:start + 500]))
                for mapping in conn.execute(stmt).mappings():
                    row = ShipmentRow.from_mapping(mapping)
                    found[row.id] = row
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"no ledger row {missing[0]}")
        return [found[i] for i in ids]

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
        """Rows an earlier run left unfinished: not labelled yet, labelled but not written back, or with a lookup
        by reference pending (``label_uncertain`` in its settle window, or the watch after a rebuy)."""
        t = schema.shipments
        stmt = sa.select(t).where(t.c.pipeline == pipeline, sa.or_(
            t.c.state.in_([s.value for s in UNFINISHED_STATES]), t.c.next_lookup_at.is_not(None)))
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(t.c.id)).mappings().all()
        return [ShipmentRow.from_mapping(r) for r in rows]

    def register_orders(self, pipeline: str, items: Iterable[Any], *, actor: str | None = None,
                        batch: int = 500) -> list[tuple[ShipmentRow, bool]]:
        """Record a whole extract: :meth:`register_order` for each :class:`~ml_connector.models.Order` and
        :meth:`register_failure` for each unreadable document (an object with ``erp``, ``erp_id``, ``number``,
        ``modified_at`` and ``error``), ``batch`` documents per transaction instead of one each. Orders the ledger
        has never seen are inserted, read back and audited with one statement each per batch. Returns
        ``(row, created)`` per item, in order (``created`` is false for failures)."""
        items = list(items)
        out: list[tuple[ShipmentRow, bool]] = []
        for start in range(0, len(items), batch):
            with self.write(durable=False) as conn:  # lost on a power cut: the next run extracts it again
                chunk = items[start:start + batch]
                created = self._register_new_orders(conn, pipeline, [i for i in chunk if isinstance(i, Order)],
                                                    actor=actor)
                for item in chunk:
                    if isinstance(item, Order):
                        known = created.pop(item.erp_id, None)  # a document listed twice: once created
                        out.append((known, True) if known is not None
                                   else self._register_order(conn, pipeline, item, actor=actor))
                    else:
                        modified = item.modified_at.isoformat() if item.modified_at else None
                        out.append((self._register_failure(
                            conn, pipeline, erp=item.erp, erp_id=item.erp_id, order_number=item.number,
                            modified_at=modified, error=item.error, actor=actor), False))
        return out

    def _register_new_orders(self, conn: Connection, pipeline: str, orders: list[Order], *,
                             actor: str | None) -> dict[str, ShipmentRow]:
        """Insert the ``orders`` this pipeline has no row for (one statement), read them back and audit them; the
        rows this call created, by ERP id. Orders seen before (or inserted by someone else meanwhile) are left
        to :meth:`_register_order`."""
        t = schema.shipments
        unique = {o.erp_id: o for o in orders}
        if not unique:
            return {}
        ids = list(unique)
        existing = set(conn.execute(sa.select(t.c.erp_id).where(t.c.pipeline == pipeline,
                                                                t.c.erp_id.in_(ids))).scalars())
        new = [unique[i] for i in ids if i not in existing]
        if not new:
            return {}
        conn.execute(self._insert(t).on_conflict_do_nothing(index_elements=["pipeline", "erp_id"]), [
            {"pipeline": pipeline, "erp": o.erp, "erp_id": o.erp_id, "order_number": o.number,
             "state": ShipmentState.EXTRACTED.value, "order_json": o.model_dump(mode="json"),
             "order_modified_at": o.modified_at.isoformat() if o.modified_at else None, "last_run_id": actor}
            for o in new])
        rows = {}
        for mapping in conn.execute(self._lock(sa.select(t).where(
                t.c.pipeline == pipeline, t.c.erp_id.in_([o.erp_id for o in new])))).mappings():
            row = ShipmentRow.from_mapping(mapping)
            # a row another extract inserted between our select and insert is not ours to call created
            if row.state is ShipmentState.EXTRACTED and row.last_run_id == actor:
                rows[row.erp_id] = row
        if rows:
            conn.execute(schema.audit_log.insert(), [
                {"shipment_pk": r.id, "pipeline": r.pipeline, "order_number": r.order_number,
                 "step": "extract_orders", "outcome": "ok", "to_state": r.state.value,
                 "message": f"extracted {r.order_number}", "actor": actor} for r in rows.values()])
        return rows

    def register_order(self, pipeline: str, order: Order, *, actor: str | None = None) -> tuple[ShipmentRow, bool]:
        """Record an extracted order; returns ``(row, created)``.

        A new document starts in ``extracted``. A document seen before keeps its state; while no label exists
        and no purchase is open (``label_requested``, ``label_uncertain``: the copy the label was asked for is
        kept) its stored copy is refreshed (the ERP is the source of truth), and a quarantined one whose ERP
        document changed since is re-opened so that the fix is picked up. Re-opening keeps
        ``label_requested_at``: a purchase attempted before is looked up before any new one.
        """
        with self.write() as conn:
            return self._register_order(conn, pipeline, order, actor=actor)

    def _register_order(self, conn: Connection, pipeline: str, order: Order, *,
                        actor: str | None) -> tuple[ShipmentRow, bool]:
        order_json = order.model_dump(mode="json")
        modified = order.modified_at.isoformat() if order.modified_at else None
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
        if not row.is_labelled and row.state not in PURCHASE_OPEN_STATES:
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
        reason, and re-opened once the document changes in the ERP (nothing is silently dropped). A row that
        is labelled or has a purchase open keeps its state and gets the error recorded."""
        with self.write() as conn:
            return self._register_failure(conn, pipeline, erp=erp, erp_id=erp_id, order_number=order_number,
                                          modified_at=modified_at, error=error, step=step, actor=actor)

    def _register_failure(self, conn: Connection, pipeline: str, *, erp: str, erp_id: str, order_number: str,
                          modified_at: str | None, error: BaseException | str, step: str = "extract_orders",
                          actor: str | None = None) -> ShipmentRow:
        message = str(error)
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
        if row.is_labelled or row.state in PURCHASE_OPEN_STATES:
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
        with self.write(durable=False) as conn:  # a lost claim is taken again
            result = conn.execute(
                t.update()
                .where(t.c.id == shipment_id)
                .where(sa.or_(t.c.claimed_by.is_(None), t.c.claimed_by == owner, t.c.claim_expires_at < now))
                .values(claimed_by=owner, claim_expires_at=now + ttl_seconds, attempts=t.c.attempts + 1)
            )
        return result.rowcount == 1

    def release(self, shipment_id: int, owner: str) -> None:
        with self.write(durable=False) as conn:  # a lost release expires with the claim
            self._release_claim(conn, shipment_id, owner)

    @staticmethod
    def _release_claim(conn: Connection, shipment_id: int, owner: str) -> None:
        t = schema.shipments
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

    def claim_to_buy(self, shipment_id: int, owner: str, *, ttl_seconds: float, order_json: Mapping[str, Any],
                     step: str, message: str, actor: str | None = None,
                     **fields: Any) -> tuple[bool, ShipmentRow | None, bool]:
        """Claim the row and, when it is plainly ready for a first purchase, move it to ``label_requested`` in the
        same transaction (one commit instead of two; ``label_requested`` is still committed before the carrier
        is called). Returns ``(won, row, requested)``.

        ``requested`` is true only for a row in ``address_ok`` whose purchase was never attempted and whose
        stored order is ``order_json`` (the copy the caller planned the label from). Otherwise the claim alone
        is taken (``won``) and the caller goes the long way with the row as it is now.
        """
        now = time.time()
        t = schema.shipments

        def work(conn: Connection) -> tuple[bool, ShipmentRow | None, bool]:
            result = conn.execute(
                t.update()
                .where(t.c.id == shipment_id)
                .where(sa.or_(t.c.claimed_by.is_(None), t.c.claimed_by == owner, t.c.claim_expires_at < now))
                .values(claimed_by=owner, claim_expires_at=now + ttl_seconds, attempts=t.c.attempts + 1)
            )
            if result.rowcount != 1:
                return False, None, False
            row = self._get(conn, shipment_id)
            if (row.state is not ShipmentState.ADDRESS_OK or row.label_requested_at is not None
                    or row.order_json != order_json):
                return True, row, False
            self._update(conn, row.id, state=ShipmentState.LABEL_REQUESTED.value,
                         label_requested_at=sa.func.current_timestamp(), **fields)
            self._audit(conn, shipment=row, step=step, outcome="ok", from_state=row.state.value,
                        to_state=ShipmentState.LABEL_REQUESTED.value, message=message, actor=actor)
            return True, self._get(conn, row.id), True

        # durable, and grouped with the same writes of the lane's other threads (one fsync for several)
        return self.write_grouped(work)

    def transition(self, shipment_id: int, to_state: ShipmentState, *, step: str, message: str | None = None,
                   detail: Mapping[str, Any] | None = None, actor: str | None = None,
                   expect: Iterable[ShipmentState] | None = None, outcome: str = "ok", durable: bool = True,
                   **fields: Any) -> ShipmentRow:
        """Move a row to ``to_state`` (compare-and-set) and append the audit row in the same transaction.

        Moving to ``label_requested`` records ``label_requested_at`` the first time (it is never cleared).

        :param expect: states the row must be in; defaults to every state that may move to ``to_state``.
        :param outcome: the audit row's outcome (``ok``; a person's decision names itself: ``rebuy``...).
        :param durable: see :meth:`~ml_connector.ledger.engine.LedgerBase.write`; a move to ``label_requested``
            is always durable (it must be on disk before the carrier is called).
        :param fields: other columns to set (``service_code``, ``error``...).
        """
        durable = durable or to_state is ShipmentState.LABEL_REQUESTED

        def work(conn: Connection) -> ShipmentRow:
            row = self._get(conn, shipment_id, lock=True)
            allowed = set(expect) if expect is not None else {s for s, nxt in TRANSITIONS.items() if to_state in nxt}
            allowed.add(to_state)  # re-entering the same state is an idempotent no-op move
            if row.state not in allowed:
                raise InvalidTransition(
                    f"order {row.order_number}: cannot move from '{row.state.value}' to '{to_state.value}' ({step})"
                )
            if to_state is ShipmentState.LABEL_REQUESTED and row.label_requested_at is None:
                fields.setdefault("label_requested_at", sa.func.current_timestamp())
            self._update(conn, row.id, state=to_state.value, **fields)
            self._audit(conn, shipment=row, step=step, outcome=outcome, from_state=row.state.value,
                        to_state=to_state.value, message=message, detail=detail, actor=actor)
            return self._get(conn, row.id)

        if durable:
            with self.write() as conn:
                return work(conn)
        return self.write_grouped(work, durable=False)  # a lane's threads share the transaction

    def mark_uncertain(self, shipment_id: int, *, step: str, reason: str, now: float, next_lookup_at: float | None,
                       lookup_until: float, actor: str | None = None,
                       detail: Mapping[str, Any] | None = None) -> ShipmentRow:
        """``label_requested`` -> ``label_uncertain``: the purchase's outcome is unknown (no answer, a timeout, a
        5xx after sending, or an attempt interrupted before its outcome was recorded). From here only an adopted
        label or a person's decision moves the row on; lookups by reference are scheduled.

        :param reason: what happened, for the ledger's ``error`` and the audit row (a person reads it).
        :param now: epoch seconds (``uncertain_since``).
        :param next_lookup_at: when the next lookup by reference is due (``None``: none).
        :param lookup_until: when the settle window ends.
        """
        return self.transition(shipment_id, ShipmentState.LABEL_UNCERTAIN, step=step, message=reason,
                               detail=detail, actor=actor, expect=[ShipmentState.LABEL_REQUESTED],
                               outcome="uncertain", uncertain_since=now, lookup_attempts=0,
                               next_lookup_at=next_lookup_at, lookup_until=lookup_until, error=reason,
                               error_step=step)

    def record_lookup(self, shipment_id: int, *, step: str, outcome: str, message: str,
                      next_lookup_at: float | None, error: str | None = None, actor: str | None = None,
                      detail: Mapping[str, Any] | None = None) -> ShipmentRow:
        """Record one lookup by reference that adopted nothing (state unchanged): count it, schedule the next
        one (``None``: no more automatic lookups) and, when given, set the row's ``error`` to what a person
        should read.

        :param outcome: ``not_found``, ``lookup_failed``, ``needs_decision``, ``watch_ended``...
        """
        with self.write() as conn:
            row = self._get(conn, shipment_id, lock=True)
            values: dict[str, Any] = dict(lookup_attempts=schema.shipments.c.lookup_attempts + 1,
                                          next_lookup_at=next_lookup_at)
            if error is not None:
                values.update(error=error, error_step=step)
            self._update(conn, row.id, **values)
            self._audit(conn, shipment=row, step=step, outcome=outcome, from_state=row.state.value,
                        to_state=row.state.value, message=message, detail=detail, actor=actor)
            return self._get(conn, row.id)

    def _update(self, conn: Connection, row_id: int, /, **values: Any) -> None:
        values["updated_at"] = sa.func.current_timestamp()
        conn.execute(schema.shipments.update().where(schema.shipments.c.id == row_id).values(**values))

    def quarantine(self, shipment_id: int, *, step: str, error: BaseException | str,
                   actor: str | None = None) -> ShipmentRow:
        """Park a row whose data is wrong, with the reason; it is re-opened when the ERP document changes.

        A labelled or ``label_uncertain`` row keeps its state and gets the error recorded: a label that exists,
        or may exist, is never hidden behind ``quarantined``. (A ``label_requested`` row is quarantined: the
        service lets an error escape from that state only when the carrier refused the order, so no label
        exists; ``label_requested_at`` stays, so any later purchase looks up first.)"""
        message = str(error)
        with self.write() as conn:
            row = self._get(conn, shipment_id, lock=True)
            if row.is_labelled or row.is_uncertain:
                # a label exists or may exist: never hide it behind 'quarantined'; keep the state, record the error
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
                     actor: str | None = None, adopted: bool = False, step: str = "create_shipment",
                     outcome: str | None = None, message: str | None = None,
                     detail: Mapping[str, Any] | None = None, next_lookup_at: float | None = None,
                     lookup_until: float | None = None, release_claim: str | None = None) -> ShipmentRow:
        """Persist a bought (or adopted) label: tracking numbers, label paths and state ``labelled`` in one
        transaction, so that no retry can ever buy a second one.

        A bought label is recorded from ``label_requested``; an adopted one (found by reference, or recorded by
        a person) from any state without a label. A row already labelled is returned as it is. The
        ``label_uncertain`` bookkeeping is cleared; ``next_lookup_at``/``lookup_until`` start the watch for an
        abandoned label after a rebuy.

        :param outcome: the audit row's outcome (default ``ok``, or ``adopted``).
        :param message: the audit row's message (default: what happened and the tracking numbers).
        :param detail: more for the audit row's detail (who decided, why...).
        :param release_claim: give back this owner's claim in the same transaction (one commit instead of two).
        """
        def work(conn: Connection) -> ShipmentRow:
            row = self._get(conn, shipment_id, lock=True)
            if row.is_labelled:
                if release_claim is not None:
                    self._release_claim(conn, row.id, release_claim)
                return row
            allowed = ({s for s, nxt in TRANSITIONS.items() if ShipmentState.LABELLED in nxt} if adopted
                       else {ShipmentState.LABEL_REQUESTED})
            if row.state not in allowed:
                raise InvalidTransition(f"order {row.order_number}: label recorded while '{row.state.value}'")
            charges = result.charges
            self._update(
                conn, row.id, state=ShipmentState.LABELLED.value, shipment_id=result.shipment_id,
                tracking_numbers=list(result.tracking_numbers),
                label_path=label_paths.get(result.tracking_numbers[0]) if result.tracking_numbers else None,
                charges=f"{charges.amount} {charges.currency}" if charges else None,
                error=None, error_step=None, uncertain_since=None, lookup_attempts=0,
                next_lookup_at=next_lookup_at, lookup_until=lookup_until,
                label_requested_at=sa.func.coalesce(schema.shipments.c.label_requested_at,
                                                    sa.func.current_timestamp()),
            )
            if release_claim is not None:
                self._release_claim(conn, row.id, release_claim)
            for seq, number in enumerate(result.tracking_numbers, start=1):
                conn.execute(self._insert(schema.packages).values(
                    shipment_pk=row.id, seq=seq, tracking_number=number, label_path=label_paths.get(number),
                    status="label_created",
                ).on_conflict_do_nothing(index_elements=["tracking_number"]))
            default_message = ("adopted the label of an earlier attempt " if adopted else "label created ") + \
                ", ".join(result.tracking_numbers)
            self._audit(conn, shipment=row, step=step, outcome=outcome or ("adopted" if adopted else "ok"),
                        from_state=row.state.value, to_state=ShipmentState.LABELLED.value,
                        message=message or default_message,
                        detail={"shipment_id": result.shipment_id,
                                "tracking_numbers": list(result.tracking_numbers),
                                "charges": f"{charges.amount} {charges.currency}" if charges else None,
                                # what the charges are, for finance (ml-connector costs)
                                "charges_basis": ("negotiated" if result.negotiated_charges else "published")
                                if charges else None,
                                "published_charges": f"{result.total_charges.amount} {result.total_charges.currency}"
                                if result.total_charges else None,
                                "warnings": list(result.warnings), **(detail or {})},
                        actor=actor)
            return self._get(conn, row.id)

        return self.write_grouped(work)  # durable, grouped with the lane's other threads

    def package_labels(self, shipment_id: int) -> list[tuple[str, str | None]]:
        """``(tracking number, label path)`` of each package of a row, in package order."""
        with self.read() as conn:
            rows = conn.execute(sa.select(schema.packages.c.tracking_number, schema.packages.c.label_path)
                                .where(schema.packages.c.shipment_pk == shipment_id)
                                .order_by(schema.packages.c.seq)).all()
        return [(r.tracking_number, r.label_path) for r in rows]

    def package_owner(self, tracking_number: str) -> ShipmentRow | None:
        """The row whose package ``tracking_number`` is, if any."""
        with self.read() as conn:
            pk = conn.execute(sa.select(schema.packages.c.shipment_pk).where(
                schema.packages.c.tracking_number == tracking_number)).scalar()
            return self._get(conn, pk) if pk is not None else None

    def tracked(self, pipeline: str) -> list[ShipmentRow]:
        """Rows whose packages are still moving (labelled, written back, in transit, exception)."""
        return self.list(pipeline, TRACKED_STATES)
