"""Shipments: one row per ERP document per pipeline, moved through the state machine exactly once.

Every state change is a compare-and-set in one transaction together with its audit row, so two workers can
never both move the same order, and a crash leaves either the old state or the new one, never half of each.
A worker claims a row (:meth:`ShipmentsMixin.claim`) before calling out for it; an expired claim can be taken
over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ml_connector.errors import ConnectorError
from ml_connector.ledger import schema
from ml_connector.ledger.audit import AuditMixin
from ml_connector.ledger.schema import (
    LABELLED_STATES,
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

    def tracked(self, pipeline: str) -> list[ShipmentRow]:
        """Rows whose packages are still moving (labelled, written back, in transit, exception)."""
        return self.list(pipeline, TRACKED_STATES)
